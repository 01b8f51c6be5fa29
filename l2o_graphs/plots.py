"""Small plotting helpers shared by the demo, the meta-training curves and the benchmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence


def running_mean(values: Sequence[float], window: int) -> List[float]:
    """Mean of the last ``window`` values at every position (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_loss_curves(panels: Dict[str, Dict[str, Sequence[float]]], path: Path, smooth_parts: int = 40) -> Path:
    """One panel per title, one smoothed minibatch-loss curve per label (log scale); writes
    ``path`` (PNG) and returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for label, curve in curves.items():
            ax.plot(running_mean(curve, max(1, len(curve) // smooth_parts)), label=label)
        ax.set(title=title, xlabel="step", ylabel="minibatch loss", yscale="log")
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

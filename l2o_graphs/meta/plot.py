"""Curves of a meta-training run from its ``metrics.jsonl``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Sequence, Union

from l2o_graphs.cache import read_jsonl
from l2o_graphs.plots import running_mean


def logged_auxiliary_keys(rows: Sequence[Dict]) -> List[str]:
    """The ``aux_*`` columns of a run's log rows (``metrics.jsonl`` or ``auxiliary_warmup.jsonl``),
    sorted."""
    return sorted({key for r in rows for key in r if key.startswith("aux_")})


def plot_run(run_dir: Union[str, Path]) -> Path:
    """Write ``meta_curves.png`` (meta-loss with a running mean, meta-gradient norm, learning
    rate, for runs with auxiliary tasks the running mean of each auxiliary loss, and for
    meta-validated runs the validation score, against the outer step) into ``run_dir``; returns
    its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a meta-training run directory?")
    rows = read_jsonl(path)
    steps = [r["step"] for r in rows]
    auxiliary = logged_auxiliary_keys(rows)
    validation_path = run_dir / "validation.jsonl"
    validation = read_jsonl(validation_path) if validation_path.is_file() else []
    extra = bool(auxiliary) + bool(validation)
    fig, axes = plt.subplots(1, 3 + extra, figsize=(13 + 4.3 * extra, 3.6))
    finite = [(s, r["meta_loss"]) for s, r in zip(steps, rows) if math.isfinite(r["meta_loss"])]
    window = max(1, len(finite) // 20)
    axes[0].plot(*zip(*finite), alpha=0.3, label="per step")
    axes[0].plot([s for s, _ in finite], running_mean([v for _, v in finite], window), label=f"mean of {window}")
    skipped = len(rows) - len(finite)
    config_path = run_dir / "config.json"
    meta_loss = json.loads(config_path.read_text()).get("meta_loss", "ratio") if config_path.is_file() else "ratio"
    title = {"ratio": "mean log(loss / loss at start)", "relative": "log(loss / base rule's), hinged"}[meta_loss]
    axes[0].set(title=f"meta-loss: {title}" + (f"\n{skipped} non-finite left out" if skipped else ""),
                xlabel="outer step")
    axes[0].legend()
    axes[1].plot(steps, [r["grad_norm"] for r in rows])
    axes[1].set(title="meta-gradient norm (before clipping)", xlabel="outer step", yscale="log")
    axes[2].plot(steps, [r["lr"] for r in rows])
    axes[2].set(title="outer learning rate", xlabel="outer step")
    for key in auxiliary:
        logged = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
        axes[3].plot([s for s, _ in logged], running_mean([v for _, v in logged], window), label=key[len("aux_"):])
    if auxiliary:
        axes[3].set(title=f"auxiliary losses (mean of {window})", xlabel="outer step", yscale="log")
        axes[3].legend()
    if validation:
        ax = axes[-1]
        ax.plot([r["step"] for r in validation], [r["score"] for r in validation], marker="o")
        best = min(validation, key=lambda r: r["score"])
        ax.plot([best["step"]], [best["score"]], marker="*", markersize=14, color="tab:red", label="best.pt")
        ax.axhline(0.0, color="gray", linestyle="--", label="Adam 1e-3")
        metric = "mean" if validation[-1].get("metric", "mean") == "mean" else "worst task's"
        ax.set(title=f"validation: {metric} log(loss / Adam's)", xlabel="outer step")
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = run_dir / "meta_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

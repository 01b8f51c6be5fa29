"""The main job: the shipped learned optimizer against Adam on held-out networks, side by side."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Sequence, Union

import torch

from l2o_graphs.optim import NeuralGraphOptimizer
from l2o_graphs.optim.weights import PRETRAINED_DIR
from l2o_graphs.plots import plot_loss_curves
from l2o_graphs.tasks.train import HELDOUT_TASKS, train_with

DEMO_TASKS = ("mlp-784-128-128-10-mnist", "paper-cnn-x2-mnist")


def compare_with_adam(out_dir: Union[str, Path], steps: int = 300, seed: int = 0, adam_lr: float = 1e-3,
                      tasks: Sequence[str] = DEMO_TASKS) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Train each held-out task's network with the shipped NG-GNN and with Adam (``adam_lr``)
    from the same initialisation and batches; print a table, write ``demo_curves.png`` into
    ``out_dir``; return ``{task: {optimizer: {"train_loss", "test_acc", "seconds"}}}``."""
    weights = PRETRAINED_DIR / "ng-gnn.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"no shipped weights at {weights}: meta-train them with "
                                f"`l2o-graphs meta-train --config configs/meta-default.yaml --run-dir runs/ng-gnn` "
                                f"and copy runs/ng-gnn/weights.pt there")
    optimizers = {"NG-GNN (shipped)": lambda m: NeuralGraphOptimizer(m),
                  f"Adam lr={adam_lr:g}": lambda m: torch.optim.Adam(m.parameters(), lr=adam_lr)}
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    curves: Dict[str, Dict[str, list]] = {}
    print(f"{'task':<26} {'optimizer':<18} {'train loss':>10} {'test acc':>9} {'time':>7}")
    for task in tasks:
        results[task], curves[task] = {}, {}
        for name, make in optimizers.items():
            start = time.perf_counter()
            run = train_with(HELDOUT_TASKS[task], make, steps, seed)
            seconds = time.perf_counter() - start
            results[task][name] = {"train_loss": run["train_loss"], "test_acc": run["test_acc"], "seconds": seconds}
            curves[task][name] = run["curve"]
            print(f"{task:<26} {name:<18} {run['train_loss']:>10.4f} {run['test_acc']:>9.4f} {seconds:>6.1f}s",
                  flush=True)
    path = plot_loss_curves({f"{task} (held out)": by_opt for task, by_opt in curves.items()},
                            Path(out_dir) / "demo_curves.png")
    print(f"wrote {path}")
    return results

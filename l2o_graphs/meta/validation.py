"""Meta-validation: an update network scored at the evaluation horizon on tasks of its own.

The validation tasks are neither meta-training tasks (the trainer never draws them, as it never
draws held-out ones) nor held-out benchmark tasks (:data:`l2o_graphs.tasks.train.HELDOUT_TASKS`):
a run selects its checkpoint on them, so they must not be what the benchmark reports.

The score of a network is the mean over tasks and seeds of ``log(L_net / L_adam)``, the final
train losses of the learned optimizer and of Adam at learning rate 1e-3 trained from the same
initialisation on the same batches: 0 is Adam's level, negative is better. The worst task's
mean log-ratio is reported too: a checkpoint can be selected on it (``validation_metric: worst``)
when what matters is never falling behind Adam on any task.
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Mapping, Sequence

import torch

from l2o_graphs.nn import UpdateNet
from l2o_graphs.optim import NeuralGraphOptimizer
from l2o_graphs.tasks.task import TaskSpec
from l2o_graphs.tasks.train import is_heldout, same_network_as_any, train_with

VALIDATION_TASKS: Dict[str, TaskSpec] = {
    "mlp-784-64-32-10-tanh-fmnist": TaskSpec({"kind": "mlp", "hidden": [64, 32], "activation": "tanh"},
                                             "fashion_mnist", 64, 0),
    "cnn-8-16-16-k5-flatten-silu-mnist": TaskSpec(
        {"kind": "cnn", "channels": [8, 16, 16], "kernel": 5, "head": "flatten", "activation": "silu",
         "batchnorm": False, "residual": False}, "mnist", 64, 0),
    # beyond the suites' sizes and layer kinds, as the held-out benchmark is, without being it:
    # a wider and deeper MLP than any suite draws, and a residual CNN with BatchNorm
    "mlp-784-256-256-256-10-relu-mnist": TaskSpec({"kind": "mlp", "hidden": [256, 256, 256], "activation": "relu"},
                                                  "mnist", 128, 0),
    "resnet12x1-bn-mnist": TaskSpec({"kind": "resnet", "channels": 12, "blocks": 1}, "mnist", 128, 0),
}
"""Validation tasks (``seed`` is replaced per run)."""
REFERENCE_LR = 1e-3
METRICS = ("mean", "worst", "mean-ahead")
"""What ``best.pt`` minimises (:func:`selection_score`)."""

assert not any(is_heldout(spec) for spec in VALIDATION_TASKS.values())


def is_validation(spec: TaskSpec) -> bool:
    """Whether ``spec`` is one of :data:`VALIDATION_TASKS` (same network and dataset): meta-training
    never draws one."""
    return same_network_as_any(spec, VALIDATION_TASKS)


@functools.lru_cache(maxsize=64)
def _adam_loss(task: str, steps: int, seed: int) -> float:
    spec = VALIDATION_TASKS[task]
    return float(train_with(spec, lambda m: torch.optim.Adam(m.parameters(), lr=REFERENCE_LR), steps, seed)["train_loss"])


def validate(net: UpdateNet, tasks: Sequence[str], steps: int, seeds: int = 1,
             lam: float = 0.01, lr: float = 1.0) -> Dict[str, object]:
    """Train every task in ``tasks`` (names in :data:`VALIDATION_TASKS`) for ``steps`` steps with
    ``net`` as a :class:`~l2o_graphs.optim.NeuralGraphOptimizer` (step multiplier ``lr``) and with
    Adam(1e-3), ``seeds`` initialisations each.

    Returns ``{"score": mean log-ratio (lower is better; a diverged run counts as log 10),
    "worst": the largest of the tasks' mean log-ratios,
    "tasks": {name: {"loss": mean learned loss, "adam": mean Adam loss, "log_ratio": mean log-ratio}}}``."""
    unknown = [t for t in tasks if t not in VALIDATION_TASKS]
    if unknown:
        raise ValueError(f"unknown validation task {unknown[0]!r}; choose from {', '.join(VALIDATION_TASKS)}")
    per_task: Dict[str, Mapping[str, float]] = {}
    for name in tasks:
        learned, adam, task_ratios = [], [], []
        for seed in range(seeds):
            run = train_with(VALIDATION_TASKS[name], lambda m: NeuralGraphOptimizer(m, weights=net, lam=lam, lr=lr),
                             steps, seed)
            loss, reference = float(run["train_loss"]), _adam_loss(name, steps, seed)
            ratio = math.log(loss / reference) if math.isfinite(loss) and loss > 0 else math.log(10.0)
            task_ratios.append(min(ratio, math.log(10.0)))
            learned.append(loss)
            adam.append(reference)
        per_task[name] = {"loss": sum(learned) / seeds, "adam": sum(adam) / seeds,
                          "log_ratio": sum(task_ratios) / seeds}
    task_means = [t["log_ratio"] for t in per_task.values()]  # every task has `seeds` runs
    return {"score": sum(task_means) / len(task_means), "worst": max(task_means), "tasks": per_task}


def selection_score(result: Mapping[str, object], metric: str, margin: float = 0.0) -> float:
    """The number a run's checkpoint selection minimises, from a :func:`validate` result:
    ``"mean"`` the mean log-ratio, ``"worst"`` the worst task's, ``"mean-ahead"`` the mean where
    every task is more than ``margin`` ahead of Adam (worst < -margin), else the worst (a number
    no passing checkpoint's mean reaches, since its mean <= its worst < -margin: any checkpoint
    ahead on every task beats any that is not): the floor first, then the gain. ``margin`` (a log
    loss ratio, >= 0) is the part of the floor that validation noise could take away."""
    if margin < 0:
        raise ValueError(f"validation margin must be >= 0, got {margin}")
    mean, worst = float(result["score"]), float(result["worst"])
    if metric == "mean":
        return mean
    if metric == "worst":
        return worst
    if metric == "mean-ahead":
        return mean if worst < -margin else worst
    raise ValueError(f"unknown validation metric {metric!r}; choose one of {', '.join(METRICS)}")


def select_validated(rows: Sequence[Mapping[str, object]], metric: str, margin: float = 0.0) -> int:
    """The outer step whose network a selection rule picks from a run's ``validation.jsonl`` rows
    (each with ``step``, ``mean`` and ``worst``), whatever metric the run itself selected on; the
    earliest of equal scores. Raises ValueError on no rows."""
    if not rows:
        raise ValueError("no validation rows to select from")
    scores = [(selection_score({"score": row["mean"], "worst": row["worst"]}, metric, margin), int(row["step"]))
              for row in rows]
    return min(scores)[1]

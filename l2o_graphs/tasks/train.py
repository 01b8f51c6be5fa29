"""Plain training of a task's network with any ``torch.optim.Optimizer`` (evaluation runs)."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, List, Mapping

import torch
from torch import nn

from l2o_graphs.tasks.task import Task, TaskSpec

HELDOUT_TASKS: Dict[str, TaskSpec] = {
    "paper-cnn-x2-mnist": TaskSpec({"kind": "paper-cnn", "width": 2}, "mnist", 128, 0),
    "mlp-784-128-128-10-mnist": TaskSpec({"kind": "mlp", "hidden": [128, 128], "activation": "relu"}, "mnist", 128, 0),
    "cnn5-fmnist": TaskSpec({"kind": "cnn", "channels": [16, 32, 32, 64, 64], "kernel": 3, "head": "pool",
                             "activation": "relu", "batchnorm": False, "residual": False}, "fashion_mnist", 128, 0),
    # outside every meta-training family: a residual CNN of two-conv blocks with BatchNorm, and an
    # MLP wider and deeper than any suite draws (suites: at most 4 hidden layers of 256)
    "resnet8x2-bn-fmnist": TaskSpec({"kind": "resnet", "channels": 8, "blocks": 2}, "fashion_mnist", 128, 0),
    "mlp-784-512-384-256-128-64-10-gelu-fmnist": TaskSpec(
        {"kind": "mlp", "hidden": [512, 384, 256, 128, 64], "activation": "gelu"}, "fashion_mnist", 128, 0),
}
"""Evaluation tasks no meta-training suite draws (``seed`` is replaced per run)."""


def same_network_as_any(spec: TaskSpec, tasks: Mapping[str, TaskSpec]) -> bool:
    """Whether ``spec`` has the network and dataset of one of ``tasks`` (seeds and batch sizes aside)."""
    return any(spec.architecture == t.architecture and spec.dataset == t.dataset for t in tasks.values())


def is_heldout(spec: TaskSpec) -> bool:
    """Whether ``spec`` is one of :data:`HELDOUT_TASKS` (same network and dataset)."""
    return same_network_as_any(spec, HELDOUT_TASKS)

EVAL_TRAIN = 10000
"""The final train loss is measured on the first 10k training images (all of smaller sets)."""
EVAL_CURVE = 2000
"""The train-loss curve (``eval_every``) is measured on the first 2k training images."""


def eval_schedule(steps: int, every: int) -> List[int]:
    """The steps after which :func:`train_with` measures its train-loss curve: every ``every``
    steps and after the last."""
    return sorted({*range(every, steps, every), steps})


def train_with(spec: TaskSpec, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], steps: int,
               seed: int, eval_every: int = 0) -> Dict[str, object]:
    """Train ``spec``'s network, initialised with ``seed``, for ``steps`` minibatch steps.

    Returns ``curve`` (minibatch loss per step), ``train_loss`` (mean loss over up to
    ``EVAL_TRAIN`` training images at the end) and ``test_acc``; with ``eval_every`` also
    ``eval_steps`` and ``eval_curve``, the mean loss on the first ``EVAL_CURVE`` training images
    after every ``eval_every`` steps and after the last (a NaN loss ends the run early, the rest
    of both curves NaN)."""
    task = Task(dataclasses.replace(spec, seed=seed))
    model = task.module
    params, _ = task.init_params()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    optimizer = make_optimizer(model)
    batches = torch.Generator().manual_seed(10_000 + seed)
    curve: List[float] = []
    current, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    eval_steps = eval_schedule(steps, eval_every) if eval_every else []
    eval_curve: List[float] = []
    for step in range(1, steps + 1):
        x, y = task.batch(batches)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
        if eval_steps and step == eval_steps[len(eval_curve)]:
            eval_curve.append(task.evaluate(current, buffers, split="train", limit=EVAL_CURVE)[0])
        if not math.isfinite(curve[-1]):  # diverged: nothing more to learn from this run
            curve += [math.nan] * (steps - step)
            eval_curve += [math.nan] * (len(eval_steps) - len(eval_curve))
            break
    train_loss, _ = task.evaluate(current, buffers, split="train", limit=EVAL_TRAIN)
    _, test_acc = task.evaluate(current, buffers, split="test")
    out = {"curve": curve, "train_loss": train_loss, "test_acc": test_acc}
    if eval_every:
        out.update(eval_steps=eval_steps, eval_curve=eval_curve)
    return out

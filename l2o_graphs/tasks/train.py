"""Plain training of a network with any ``torch.optim.Optimizer`` (evaluation runs).

:func:`train_problem` is the one training loop of evaluation: the held-out benchmark, the demo,
meta-validation and benchmark sweeps all train through it, a built-in task by its
:class:`~l2o_graphs.tasks.task.TaskSpec` (:func:`train_with`), any other network as a
:class:`Problem`.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs.tasks.task import Task, TaskSpec, evaluate

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
"""The loss curves (``eval_every``) are measured on the first 2k training (and test) images."""
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Problem:
    """A network to train and its data, held in memory.

    Attributes:
        model: the network, already initialised (a sweep builds it from the trial's seed).
        train: ``(inputs [N, ...], targets [N, ...])``; batches are drawn uniformly with
            replacement across batches.
        test: the same for the test set, or None.
        batch_size: examples per step.
        loss: ``loss(outputs, targets)``, the mean loss of a batch (default cross-entropy);
            accuracy is reported when outputs are ``[B, C]`` scores and targets class indices.
    """

    model: nn.Module
    train: Tuple[Tensor, Tensor]
    test: Optional[Tuple[Tensor, Tensor]] = None
    batch_size: int = 128
    loss: LossFn = nn.functional.cross_entropy

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"Problem.model must be an nn.Module, got {type(self.model).__name__}")
        for name in ("train", "test"):
            data = getattr(self, name)
            if data is None and name == "test":
                continue
            if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
                    and len(data[0]) == len(data[1]) and len(data[0]) > 0):
                raise ValueError(f"Problem.{name} must be a pair of tensors (inputs, targets) of the same, "
                                 f"non-zero length")
        if not (isinstance(self.batch_size, int) and self.batch_size > 0):
            raise ValueError(f"Problem.batch_size must be a positive integer, got {self.batch_size!r}")


def problem_of(spec: TaskSpec, seed: int) -> Problem:
    """The built-in task ``spec`` with its network initialised from ``seed`` (plain tasks only:
    ``param_scale`` is a meta-training augmentation)."""
    if spec.param_scale != 1.0:
        raise ValueError(f"evaluation trains plain tasks; got param_scale {spec.param_scale}")
    task = Task(dataclasses.replace(spec, seed=seed))
    return Problem(task.module, (task.train_x, task.train_y), (task.test_x, task.test_y), spec.batch_size)


def eval_schedule(steps: int, every: int) -> List[int]:
    """The steps after which :func:`train_problem` measures its loss curves: every ``every``
    steps and after the last."""
    return sorted({*range(every, steps, every), steps})


def train_problem(problem: Problem, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], steps: int,
                  seed: int, eval_every: int = 0, test_curve: bool = False,
                  eval_at_start: bool = False, *, batches: Optional[torch.Generator] = None,
                  on_step: Optional[Callable[[int, nn.Module], None]] = None, final_eval: bool = True,
                  stop_if_diverged: bool = True) -> Dict[str, object]:
    """Train ``problem.model`` for ``steps`` minibatch steps, batches drawn with ``seed``: the one
    inner training loop of the package (the demo, held-out runs, sweeps, meta-validation and the
    CNN zoo use it).

    Returns ``curve`` (minibatch loss per step), ``train_loss`` (mean loss over up to
    ``EVAL_TRAIN`` training examples at the end), ``test_loss`` and ``test_acc`` (None without a
    test set; accuracy None when the outputs are not class scores), ``step_ms`` (mean wall time of
    a whole step: batch, forward, backward, optimizer) and ``optimizer_ms`` (of ``step()`` alone).
    With ``eval_every`` also ``eval_steps`` and ``eval_curve``, the mean loss on the first
    ``EVAL_CURVE`` training examples after every ``eval_every`` steps and after the last, and with
    ``test_curve`` ``test_loss_curve`` and ``test_acc_curve`` on the first ``EVAL_CURVE`` test
    examples at the same steps; ``eval_at_start`` adds step 0 (before any update) to the curves.
    A non-finite minibatch loss ends the run early (the rest of every curve NaN) unless
    ``stop_if_diverged`` is False.

    ``batches``: the generator batches are drawn with (default: one seeded from ``seed``);
    ``on_step(step, model)``: called before the first step (``step`` 0) and after every step;
    ``final_eval`` False: no evaluation at the end (``train_loss``, ``test_loss``, ``test_acc``
    None)."""
    model, (train_x, train_y) = problem.model, problem.train
    optimizer = make_optimizer(model)
    batches = torch.Generator().manual_seed(10_000 + seed) if batches is None else batches
    curve: List[float] = []
    eval_steps = eval_schedule(steps, eval_every) if eval_every else []
    curves: Dict[str, List[float]] = {"eval_curve": []}
    if test_curve and problem.test is not None:
        curves.update(test_loss_curve=[], test_acc_curve=[])
    step_s = optimizer_s = 0.0
    taken = 0

    def measure_curves() -> None:
        curves["eval_curve"].append(evaluate(model, train_x, train_y, problem.loss, limit=EVAL_CURVE)[0])
        if "test_loss_curve" in curves:
            test_loss, test_acc = evaluate(model, *problem.test, problem.loss, limit=EVAL_CURVE)
            curves["test_loss_curve"].append(test_loss)
            curves["test_acc_curve"].append(math.nan if test_acc is None else test_acc)

    if eval_every and eval_at_start:
        eval_steps = [0] + eval_steps
        measure_curves()
    if on_step is not None:
        on_step(0, model)
    for step in range(1, steps + 1):
        start = time.perf_counter()
        idx = torch.randint(len(train_y), (problem.batch_size,), generator=batches).to(train_y.device)
        optimizer.zero_grad()
        loss = problem.loss(model(train_x[idx]), train_y[idx])
        loss.backward()
        before_step = time.perf_counter()
        optimizer.step()
        curve.append(loss.item())
        end = time.perf_counter()
        step_s += end - start
        optimizer_s += end - before_step
        taken += 1
        if eval_steps and step == eval_steps[len(curves["eval_curve"])]:
            measure_curves()
        if on_step is not None:
            on_step(step, model)
        if stop_if_diverged and not math.isfinite(curve[-1]):  # diverged: nothing more to learn from this run
            curve += [math.nan] * (steps - step)
            for values in curves.values():
                values += [math.nan] * (len(eval_steps) - len(values))
            break
    train_loss = test_loss = test_acc = None
    if final_eval:
        train_loss, _ = evaluate(model, train_x, train_y, problem.loss, limit=EVAL_TRAIN)
        if problem.test is not None:
            test_loss, test_acc = evaluate(model, *problem.test, problem.loss)
    out = {"curve": curve, "train_loss": train_loss, "test_loss": test_loss, "test_acc": test_acc,
           "step_ms": 1e3 * step_s / taken, "optimizer_ms": 1e3 * optimizer_s / taken}
    if eval_every:
        out.update(eval_steps=eval_steps, **curves)
    return out


def train_with(spec: TaskSpec, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], steps: int,
               seed: int, eval_every: int = 0) -> Dict[str, object]:
    """:func:`train_problem` on the built-in task ``spec``, its network initialised with ``seed``."""
    return train_problem(problem_of(spec, seed), make_optimizer, steps, seed, eval_every)

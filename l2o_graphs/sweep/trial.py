"""Running one trial of a sweep: the same function for every engine (local processes, Ray).

It takes and returns plain data (dicts of numbers, strings and lists), so that a trial can be
shipped to another process or machine and its record written by the one process that owns the
results database.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Mapping

import torch
from torch import nn

from l2o_graphs.machine import describe_machine
from l2o_graphs.sweep.spec import OptimizerDef, TaskDef, builtin_tasks, import_object
from l2o_graphs.tasks.train import Problem, problem_of, train_problem

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
TORCH_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def build_problem(task: TaskDef, seed: int) -> Problem:
    """The task's network, initialised from ``seed``, and its data."""
    from l2o_graphs.tasks.task import TaskSpec

    if task.kind == "builtin":
        return problem_of(builtin_tasks()[task.source], seed)
    if task.kind == "spec":
        return problem_of(TaskSpec.from_dict(task.source), seed)
    problem = import_object(task.source)(seed=seed, **task.args)
    if not isinstance(problem, Problem):
        raise TypeError(f"task function {task.source} returned {type(problem).__name__}, not a "
                        f"l2o_graphs.tasks.train.Problem")
    return problem


def optimizer_factory(opt: OptimizerDef, setting: Mapping[str, Any]) -> OptimizerFactory:
    """``model -> optimizer`` for one setting of ``opt``'s grid (fixed ``args`` plus ``setting``)."""
    kwargs = {**opt.args, **setting}
    if opt.kind == "learned":
        from l2o_graphs.optim import NeuralGraphOptimizer, load_weights

        net = load_weights(opt.weights)
        return lambda model: NeuralGraphOptimizer(model, weights=net, **kwargs)
    cls = TORCH_OPTIMIZERS.get(opt.kind) or import_object(opt.kind)
    return lambda model: cls(model.parameters(), **kwargs)


def run_trial(spec: Mapping[str, Any], trial: Mapping[str, Any], threads: int = 0) -> Dict[str, Any]:
    """Run ``trial`` (``Trial`` fields as a dict) of the sweep ``spec`` (``SweepSpec.to_dict()``).

    Returns the train-loss, test-loss and accuracy results of
    :func:`~l2o_graphs.tasks.train.train_problem`, its curves, its per-step wall-clock and the
    trial's total ``wall_s`` and the ``machine`` it ran on (:func:`~l2o_graphs.machine.describe_machine`
    without its GPU: trials train on the CPU); exceptions propagate (the engine records the trial as failed).
    ``threads`` > 0 sets torch's CPU threads first."""
    if threads > 0:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    task = TaskDef(**next(t for t in spec["tasks"] if t["name"] == trial["task"]))
    opt = OptimizerDef(**next(o for o in spec["optimizers"] if o["name"] == trial["optimizer"]))
    problem = build_problem(task, trial["seed"])
    result = train_problem(problem, optimizer_factory(opt, trial["setting"]), spec["steps"], trial["seed"],
                           eval_every=spec["eval_every"], test_curve=spec["test_curve"], eval_at_start=True)
    result["diverged"] = not all(math.isfinite(v) for v in result["curve"])
    result["wall_s"] = time.perf_counter() - start
    result["machine"] = describe_machine(gpu=False)
    return result

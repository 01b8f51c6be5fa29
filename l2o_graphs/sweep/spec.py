"""A benchmark sweep as plain data: which tasks, which optimizers over which grids, which seeds.

A sweep file (YAML)::

    name: heldout                     # default: the file's stem
    steps: 1000
    seeds: 5                          # 5 means seeds 0..4; or a list [0, 3, 7]
    eval_every: 50                    # loss curves every 50 steps (0: final values only)
    test_curve: true                  # also the test loss and accuracy at every curve point
    baseline: adam                    # what speedups are measured against (tuned over its grid)
    tasks:
      - paper-cnn-x2-mnist            # a built-in task by name (held-out or validation tasks)
      - {suite: small, count: 3, seed: 0}   # tasks drawn from a built-in suite (or a suite YAML)
      - {name: tiny-mlp, architecture: {kind: mlp, hidden: [32], activation: relu},
         dataset: digits, batch_size: 64}   # any network of the architecture builder
      - {name: mine, function: my_pkg.tasks:make_problem, args: {width: 64}}  # your own
    optimizers:
      adam: {kind: adam, grid: {lr: {log: [1.0e-4, 1.0e-1], points: 7}}, default: {lr: 1.0e-3}}
      sgd: {kind: sgd, args: {momentum: 0.9}, grid: {lr: [0.01, 0.1]}}
      ng-gnn: {kind: learned, weights: l2o_graphs/pretrained/ng-gnn.pt, grid: {lr: [1, 3]},
               default: {lr: 1}}
      radam: {kind: torch.optim.RAdam, grid: {lr: [1.0e-3]}}   # any optimizer class by import path
    groups:                           # optional: replicates reported together (mean ± std over members)
      ng-gnn: [ng-gnn-seed0, ng-gnn-seed1, ng-gnn-seed2]

``kind`` is ``adam``, ``adamw``, ``sgd``, ``learned`` (a :class:`NeuralGraphOptimizer`: ``weights``
names the weights file, the net is read from it; ``args`` may add ``net``, ``update`` or any
constructor keyword) or ``package.module:Class`` / ``package.module.Class``. ``args`` are fixed
keywords; ``grid`` maps keywords to lists of values or ``{log: [low, high], points: n}``
(log-spaced, ends included); the trials take every combination. ``default`` names the setting
reported as the untuned one. ``groups`` names sets of optimizers that are replicates of one recipe
(say, the weights of meta-training runs that differ only in their seed); the report gives each
group's mean ± std over its members, and compares two groups (:mod:`l2o_graphs.sweep.report`).
Groups change no trial's result. A user task function takes ``seed`` (and ``args``) and returns a
:class:`~l2o_graphs.tasks.train.Problem` (model initialised from the seed, data, loss).

:func:`load_sweep` checks every field before anything runs and raises :class:`SweepError` naming
the path of the bad one (``optimizers.adam.grid.lr``).
"""
from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

BUILTIN_OPTIMIZERS = ("adam", "adamw", "sgd", "learned")


def setting_label(setting: Mapping[str, Any]) -> str:
    """``lr=0.001, momentum=0.9`` (``-`` for the empty setting)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()) or "-"


def builtin_tasks() -> Dict[str, Any]:
    """The tasks a sweep names by name: the held-out benchmark's and meta-validation's
    (``{name: TaskSpec}``)."""
    from l2o_graphs.meta.validation import VALIDATION_TASKS
    from l2o_graphs.tasks.train import HELDOUT_TASKS

    return {**HELDOUT_TASKS, **VALIDATION_TASKS}


class SweepError(ValueError):
    """A sweep file with a missing, unknown or malformed field; the message starts with its path."""


@dataclass(frozen=True)
class TaskDef:
    """One task of a sweep: ``kind`` is ``builtin`` (``source`` a task name), ``spec`` (``source``
    a :class:`~l2o_graphs.tasks.task.TaskSpec` dict) or ``function`` (``source`` an import path,
    ``args`` its keywords)."""

    name: str
    kind: str
    source: Any
    args: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": self.source, "args": self.args}


@dataclass(frozen=True)
class OptimizerDef:
    """One optimizer of a sweep and its grid (see the module docstring)."""

    name: str
    kind: str
    args: Dict[str, Any]
    grid: Dict[str, List[Any]]
    default: Optional[Dict[str, Any]] = None
    weights: Optional[str] = None
    weights_sha256: Optional[str] = None  # what the file held when the sweep was read

    def settings(self) -> List[Dict[str, Any]]:
        """Every combination of the grid's values, in grid order (one empty setting without a grid)."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "args": self.args, "grid": self.grid,
                "default": self.default, "weights": self.weights, "weights_sha256": self.weights_sha256}


@dataclass(frozen=True)
class Trial:
    """One run: a task, an optimizer with one setting of its grid, a seed."""

    task: str
    optimizer: str
    setting: Dict[str, Any]
    seed: int

    @property
    def key(self) -> str:
        """A stable identifier (the task, optimizer, setting and seed as canonical JSON)."""
        return json.dumps([self.task, self.optimizer, self.setting, self.seed], sort_keys=True)

    def __str__(self) -> str:
        return f"{self.task} / {self.optimizer} ({setting_label(self.setting)}) / seed {self.seed}"


MEANING_VERSION = 2  # what SweepSpec.meaning digests; earlier versions' records still count


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep (see the module docstring)."""

    name: str
    steps: int
    seeds: Tuple[int, ...]
    eval_every: int
    test_curve: bool
    baseline: Optional[str]
    tasks: Tuple[TaskDef, ...]
    optimizers: Tuple[OptimizerDef, ...]
    groups: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    def trials(self) -> List[Trial]:
        """Every trial, task by task, then optimizer, setting and seed."""
        return [Trial(t.name, o.name, s, seed) for t in self.tasks for o in self.optimizers
                for s in o.settings() for seed in self.seeds]

    def task(self, name: str) -> TaskDef:
        return next(t for t in self.tasks if t.name == name)

    def optimizer(self, name: str) -> OptimizerDef:
        return next(o for o in self.optimizers if o.name == name)

    def meaning(self, trial: Trial, version: int = MEANING_VERSION) -> str:
        """A digest of everything that decides ``trial``'s result: its task's and optimizer's
        definitions (the weights file's content, not its path; not the optimizer's name, nor the
        rest of its grid: a moved file, a renamed entry or a grid with more points means the
        same), its setting, steps and curve spacing. A finished trial whose meaning changed is not
        silently mixed with new ones. ``version``: the digest as sweeps wrote it earlier (0: with
        the path, name and grid; 1: with the grid), for :meth:`means`."""
        if not 0 <= version <= MEANING_VERSION:
            raise ValueError(f"meaning version must be 0..{MEANING_VERSION}, got {version}")
        payload = {"task": self.task(trial.task).to_dict(), "optimizer": self.optimizer(trial.optimizer).to_dict(),
                   "steps": self.steps, "eval_every": self.eval_every, "test_curve": self.test_curve}
        payload["optimizer"].pop("default")  # which setting is reported as untuned changes no result
        if version >= 1:  # neither its label nor where its file lies decides a result
            payload["optimizer"].pop("weights")
            payload["optimizer"].pop("name")
        if version >= 2:  # the trial's own setting does, the grid's other points do not
            payload["optimizer"].pop("grid")
            payload["setting"] = trial.setting
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def means(self, trial: Trial, recorded: str) -> bool:
        """Whether a record of meaning ``recorded`` is ``trial``'s result: its meaning now, or as
        an earlier version wrote it (results directories written before paths, names and grids
        stopped counting)."""
        return recorded in {self.meaning(trial, version) for version in range(MEANING_VERSION + 1)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepSpec":
        """The inverse of :meth:`to_dict` (the definition a run directory stores)."""
        return cls(d["name"], d["steps"], tuple(d["seeds"]), d["eval_every"], d["test_curve"], d["baseline"],
                   tuple(TaskDef(**t) for t in d["tasks"]), tuple(OptimizerDef(**o) for o in d["optimizers"]),
                   {name: tuple(members) for name, members in d.get("groups", {}).items()})

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "seeds": list(self.seeds), "eval_every": self.eval_every,
                "test_curve": self.test_curve, "baseline": self.baseline,
                "tasks": [t.to_dict() for t in self.tasks], "optimizers": [o.to_dict() for o in self.optimizers],
                "groups": {name: list(members) for name, members in self.groups.items()}}


# ---------------------------------------------------------------------------------------- parsing
def _fail(path: str, message: str) -> SweepError:
    return SweepError(f"{path}: {message}")


def _int(value: Any, path: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _mapping(value: Any, path: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected a mapping, got {type(value).__name__}")
    return value


def _keys(value: Mapping[str, Any], path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> None:
    for key in value:
        if key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown field; expected one of {', '.join(allowed)}")
    for key in required:
        if key not in value:
            raise _fail(f"{path}.{key}", "missing")


def import_object(path: str) -> Any:
    """``package.module:name`` or ``package.module.name`` -> the object (ImportError or
    AttributeError when it does not exist)."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ImportError(f"{path!r} is not an import path (package.module:name)")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _grid_values(value: Any, path: str) -> List[Any]:
    if isinstance(value, dict):
        _keys(value, path, ("log", "points"), ("log", "points"))
        bounds, points = value["log"], _int(value["points"], f"{path}.points", 1)
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) and b > 0 for b in bounds)):
            raise _fail(f"{path}.log", f"expected [low, high], two positive numbers, got {bounds!r}")
        low, high = (math.log10(float(b)) for b in bounds)
        if points == 1:
            return [float(bounds[0])]
        return [float(f"{10 ** (low + i * (high - low) / (points - 1)):.6g}") for i in range(points)]
    if not isinstance(value, list) or not value:
        raise _fail(path, f"expected a non-empty list of values or {{log: [low, high], points: n}}, got {value!r}")
    if len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        raise _fail(path, "repeated value")
    return list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _parse_task(item: Any, path: str) -> List[TaskDef]:
    from l2o_graphs.tasks.task import TaskSpec

    builtin = builtin_tasks()
    if isinstance(item, str):
        if item not in builtin:
            raise _fail(path, f"unknown task {item!r}; built-in tasks: {', '.join(builtin)}")
        return [TaskDef(item, "builtin", item)]
    item = _mapping(item, path)
    if "suite" in item:
        from l2o_graphs.tasks.suites import SuiteError, load_suite, parse_suite

        _keys(item, path, ("suite", "count", "seed", "name"), ("suite", "count"))
        count, seed = _int(item["count"], f"{path}.count", 1), _int(item.get("seed", 0), f"{path}.seed", 0)
        try:
            suite = parse_suite(item["suite"]) if isinstance(item["suite"], dict) else load_suite(item["suite"])
        except (SuiteError, FileNotFoundError, OSError) as err:
            raise _fail(f"{path}.suite", str(err)) from None
        import torch

        sampler = torch.Generator().manual_seed(seed)
        prefix = item.get("name", suite.name)
        return [TaskDef(f"{prefix}-{seed}-{i}", "spec", suite.sample(sampler).to_dict()) for i in range(count)]
    if "function" in item:
        _keys(item, path, ("name", "function", "args"), ("name", "function"))
        try:
            if not callable(import_object(item["function"])):
                raise _fail(f"{path}.function", f"{item['function']!r} is not callable")
        except (ImportError, AttributeError) as err:
            raise _fail(f"{path}.function", f"cannot import {item['function']!r}: {err}") from None
        return [TaskDef(_name(item["name"], f"{path}.name"), "function", item["function"],
                        dict(_mapping(item.get("args", {}), f"{path}.args")))]
    _keys(item, path, ("name", "architecture", "dataset", "batch_size"), ("name", "architecture", "dataset"))
    from l2o_graphs.data import DATASET_NAMES

    if item["dataset"] not in DATASET_NAMES:
        raise _fail(f"{path}.dataset", f"unknown dataset {item['dataset']!r}; choose one of {', '.join(DATASET_NAMES)}")
    spec = {"architecture": dict(_mapping(item["architecture"], f"{path}.architecture")), "dataset": item["dataset"],
            "batch_size": _int(item.get("batch_size", 128), f"{path}.batch_size", 1), "seed": 0}
    try:
        from l2o_graphs.tasks.architectures import build_optimizee

        build_optimizee(spec["architecture"], 1, 8, 10)  # refuses a bad description now, not mid-sweep
    except (ValueError, KeyError, TypeError) as err:
        raise _fail(f"{path}.architecture", str(err)) from None
    TaskSpec.from_dict(spec)
    return [TaskDef(_name(item["name"], f"{path}.name"), "spec", spec)]


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise _fail(path, f"expected a name without spaces, got {value!r}")
    return value


def _parse_optimizer(name: str, item: Any, path: str, base: Path) -> OptimizerDef:
    item = _mapping(item, path)
    _keys(item, path, ("kind", "args", "grid", "default", "weights"), ("kind",))
    kind = item["kind"]
    if not isinstance(kind, str):
        raise _fail(f"{path}.kind", f"expected a string, got {kind!r}")
    if kind not in BUILTIN_OPTIMIZERS:
        try:
            cls = import_object(kind)
        except (ImportError, AttributeError) as err:
            raise _fail(f"{path}.kind", f"not one of {', '.join(BUILTIN_OPTIMIZERS)} and cannot be imported: "
                                        f"{err}") from None
        if not callable(cls):
            raise _fail(f"{path}.kind", f"{kind!r} is not a class")
    args = dict(_mapping(item.get("args", {}), f"{path}.args"))
    grid = {k: _grid_values(v, f"{path}.grid.{k}") for k, v in _mapping(item.get("grid", {}), f"{path}.grid").items()}
    overlap = sorted(set(args) & set(grid))
    if overlap:
        raise _fail(f"{path}.grid.{overlap[0]}", "also fixed in args")
    weights = digest = None
    if kind == "learned":
        if "weights" not in item:
            raise _fail(f"{path}.weights", "missing (a learned optimizer needs its weights file)")
        weights = str(item["weights"])
        file = Path(weights) if Path(weights).is_absolute() else base / weights
        if not file.is_file():
            raise _fail(f"{path}.weights", f"no such file: {file}")
        digest = _file_digest(file)
    elif "weights" in item:
        raise _fail(f"{path}.weights", "only a learned optimizer takes a weights file")
    default = None
    if "default" in item:
        default = dict(_mapping(item["default"], f"{path}.default"))
        if sorted(default) != sorted(grid) or any(
                json.dumps(default[k]) not in {json.dumps(v) for v in grid[k]} for k in grid):
            raise _fail(f"{path}.default", f"must be one setting of the grid ({', '.join(grid) or 'empty'})")
    return OptimizerDef(_name(name, path), kind, args, grid, default, weights, digest)


def parse_sweep(data: Any, name: str = "sweep", base: Union[str, Path] = ".") -> SweepSpec:
    """Check a sweep description (a YAML file's content) and return it; ``base`` is where
    relative weights paths start. Raises :class:`SweepError` naming the bad field."""
    data = _mapping(data, "sweep")
    _keys(data, "sweep", ("name", "steps", "seeds", "eval_every", "test_curve", "baseline", "tasks", "optimizers",
                          "groups"), ("steps", "tasks", "optimizers"))
    steps = _int(data["steps"], "steps", 1)
    seeds = data.get("seeds", 1)
    if isinstance(seeds, list):
        if not seeds or len(set(seeds)) != len(seeds):
            raise _fail("seeds", f"expected distinct seeds, got {seeds!r}")
        seeds = tuple(_int(s, f"seeds[{i}]", 0) for i, s in enumerate(seeds))
    else:
        seeds = tuple(range(_int(seeds, "seeds", 1)))
    eval_every = _int(data.get("eval_every", 0), "eval_every", 0)
    test_curve = data.get("test_curve", False)
    if not isinstance(test_curve, bool):
        raise _fail("test_curve", f"expected true or false, got {test_curve!r}")
    if not isinstance(data["tasks"], list) or not data["tasks"]:
        raise _fail("tasks", "expected a non-empty list")
    base = Path(base)
    tasks = [t for i, item in enumerate(data["tasks"]) for t in _parse_task(item, f"tasks[{i}]")]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise _fail("tasks", f"task {next(n for n in names if names.count(n) > 1)!r} appears twice")
    optimizers = _mapping(data["optimizers"], "optimizers")
    if not optimizers:
        raise _fail("optimizers", "expected at least one optimizer")
    parsed = tuple(_parse_optimizer(str(k), v, f"optimizers.{k}", base) for k, v in optimizers.items())
    baseline = data.get("baseline", "adam" if "adam" in optimizers else None)
    if baseline is not None and baseline not in optimizers:
        raise _fail("baseline", f"{baseline!r} is not one of the optimizers ({', '.join(optimizers)})")
    groups = _parse_groups(data.get("groups", {}), [o.name for o in parsed], baseline)
    name = data.get("name", name)
    return SweepSpec(_name(name, "name"), steps, seeds, eval_every, test_curve, baseline, tuple(tasks), parsed, groups)


def _parse_groups(value: Any, optimizers: Sequence[str], baseline: Optional[str]) -> Dict[str, Tuple[str, ...]]:
    """``groups``: names to lists of distinct optimizers, none the baseline, none in two groups."""
    groups = {}
    seen: Dict[str, str] = {}
    for name, members in _mapping(value, "groups").items():
        path = f"groups.{name}"
        if not isinstance(members, list) or not members:
            raise _fail(path, f"expected a non-empty list of optimizers, got {members!r}")
        for member in members:
            if member not in optimizers:
                raise _fail(path, f"{member!r} is not one of the optimizers ({', '.join(optimizers)})")
            if member == baseline:
                raise _fail(path, f"{member!r} is the baseline, which every group is compared against")
            if member in seen:
                raise _fail(path, f"{member!r} is already in group {seen[member]!r}")
            seen[member] = name
        groups[_name(name, path)] = tuple(members)
    return groups


def load_sweep(path: Union[str, Path]) -> SweepSpec:
    """Read and check a sweep file (relative weights paths start at the current directory)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from None
    return parse_sweep(data, name=path.stem)

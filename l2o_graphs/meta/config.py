"""Meta-training configuration: a dataclass, read from YAML or set from the command line."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import yaml

from l2o_graphs.meta.auxiliary import check_auxiliary
from l2o_graphs.meta.validation import METRICS as VALIDATION_METRICS, VALIDATION_TASKS


META_LOSSES = {
    "ratio": "mean log(loss after an update / loss at the trajectory's start)",
    "relative": "mean log(loss after an update / the base rule's on the same run), "
                "weighted 1 + behind_weight where positive",
}
"""The meta-losses a run can train on (``MetaConfig.meta_loss``), in words."""


@dataclass
class MetaConfig:
    """Everything a meta-training run depends on (saved in the run directory).

    Attributes:
        net / net_config: the update network (``l2o_graphs.nn.NETS``) and its hyper-parameters.
        suite: a built-in suite name, a YAML path, or an inline suite mapping.
        outer_steps: meta-parameter updates. meta_batch: trajectories per outer step.
        unroll: K, inner steps per truncation (1 is the paper's one-step lookahead).
        trajectory_length: ``(low, high)`` inner steps per trajectory, drawn log-uniformly.
        second_order: differentiate through the optimizee's gradients too.
        lr / warmup / min_lr_ratio: outer Adam, linear warm-up over ``warmup`` steps, then cosine
            decay to ``lr * min_lr_ratio``. clip: meta-gradient norm clip.
        lam: the step scale of the learned update.
        seed: every random choice of the run follows from it.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        autocast: run the unrolls under bfloat16 autocast (opt-in mixed precision).
        checkpoint_every: outer steps between checkpoints.
        auxiliary: weight-space tasks whose losses are added on the update network's trunk, as
            ``{task: {weight, batch, folder, hidden}}`` (see :mod:`l2o_graphs.meta.auxiliary`);
            empty: none. Their weighted sum trains, by backpropagation and with either estimator,
            the tasks' heads and ``auxiliary_parameters``; the meta-loss trains
            ``meta_parameters``. The two gradients are clipped to ``clip`` each and added.
        auxiliary_parameters: name prefixes of the net's parameters the auxiliary losses train
            (empty: all of them; the losses reach only the trunk). Under PES with
            ``meta_parameters: [edge_dec_out, node_dec_out]``, the auxiliary losses train the
            trunk whose features PES's output layers read.
        auxiliary_lr: the outer learning rate of the auxiliary tasks' heads and of the auxiliary
            parameters that are not meta-parameters (on the same warm-up and decay); None: ``lr``.
        auxiliary_warmup: steps of the auxiliary losses alone (Adam at ``auxiliary_lr`` on what
            they train) before the first outer step of a fresh run, so that the trunk reads
            networks before meta-training starts; their losses go to ``auxiliary_warmup.jsonl``.
        estimator: ``"tbptt"`` (truncated backprop through ``unroll`` steps) or ``"pes"``
            (persistent evolution strategies, :mod:`l2o_graphs.meta.pes`: forward unrolls only,
            ``meta_batch`` antithetic pairs of trajectories). pes_sigma: the standard deviation of
            PES's perturbations of the meta-parameters.
        validate_every: outer steps between meta-validations (0: none); the first is before the
            first step. validation_steps: the inner horizon of a validation run.
            validation_tasks: names in :data:`l2o_graphs.meta.validation.VALIDATION_TASKS`.
            validation_seeds: initialisations per task. validation_metric: what ``best.pt``
            minimises, ``"mean"`` (the mean log loss ratio to Adam over tasks and seeds),
            ``"worst"`` (the worst task's) or ``"mean-ahead"`` (the mean among checkpoints ahead
            of Adam on every task by more than ``validation_margin``, a log loss ratio;
            :func:`l2o_graphs.meta.validation.selection_score`).
        meta_loss: what a truncation's meta-loss measures: ``"ratio"``, the mean log ratio of the
            optimizee's loss to its loss at the trajectory's start; ``"relative"`` (PES only, and
            a ``zero_init`` update rule), the log ratio to the loss of the same run trained by the
            rule's untrained form (Adam for the ``adam-*`` rules), with steps behind it weighted
            ``1 + behind_weight`` (:func:`l2o_graphs.meta.unroll.relative_meta_loss`): the floor
            "never behind the base rule" as the objective.
        behind_weight: see ``meta_loss``.
        ahead_cap: under ``meta_loss: relative``, the most a truncation ahead of the base rule can
            gain (a log ratio, > 0); None: no cap. Without it, tasks that keep gaining from a
            larger step outvote the ones it puts behind.
        batch_particles: under PES, when the meta-parameters are a graph net's output layers only,
            unroll all particles of a step together: one forward of the shared trunk over the
            union of their graphs per inner step (:mod:`l2o_graphs.meta.particles`); the same
            estimate up to float rounding. False: one unroll per particle.
        meta_parameters: name prefixes of the net's parameters that meta-training changes (the
            others keep their initial values); empty: all. Evolution strategies' variance grows
            with the number of meta-parameters: training the output layers alone
            (``[edge_dec_out, node_dec_out]`` for the graph nets) learns a readout of the
            untrained network's equivariant features with a few dozen of them.
    """

    net: str = "ng-gnn"
    net_config: Dict[str, Any] = field(default_factory=dict)
    suite: Union[str, Dict[str, Any]] = "fmnist-cnn"
    outer_steps: int = 300
    meta_batch: int = 4
    unroll: int = 20
    trajectory_length: Tuple[int, int] = (100, 2000)
    second_order: bool = False
    lr: float = 1e-3
    warmup: int = 20
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    lam: float = 0.01
    seed: int = 0
    device: str = "auto"
    autocast: bool = False
    checkpoint_every: int = 25
    auxiliary: Dict[str, Any] = field(default_factory=dict)
    auxiliary_parameters: Tuple[str, ...] = ()
    auxiliary_lr: Optional[float] = None
    auxiliary_warmup: int = 0
    estimator: str = "tbptt"
    pes_sigma: float = 0.01
    validate_every: int = 0
    validation_steps: int = 1000
    validation_tasks: Tuple[str, ...] = tuple(VALIDATION_TASKS)
    validation_seeds: int = 1
    validation_metric: str = "mean"
    validation_margin: float = 0.0
    meta_parameters: Tuple[str, ...] = ()
    meta_loss: str = "ratio"
    behind_weight: float = 1.0
    ahead_cap: Optional[float] = None
    batch_particles: bool = True

    def __post_init__(self) -> None:
        _check_types(self)
        self.trajectory_length = tuple(self.trajectory_length)
        self.validation_tasks = tuple(self.validation_tasks)
        self.meta_parameters = tuple(self.meta_parameters)
        self.auxiliary_parameters = tuple(self.auxiliary_parameters)
        checks = [("outer_steps", self.outer_steps >= 1), ("meta_batch", self.meta_batch >= 1),
                  ("unroll", self.unroll >= 1), ("lr", self.lr > 0), ("clip", self.clip > 0),
                  ("lam", self.lam > 0), ("warmup", self.warmup >= 0), ("checkpoint_every", self.checkpoint_every >= 1),
                  ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1),
                  ("trajectory_length", len(self.trajectory_length) == 2
                   and 1 <= self.trajectory_length[0] <= self.trajectory_length[1]),
                  ("device", self.device in ("auto", "cpu", "cuda")),
                  ("estimator", self.estimator in ("tbptt", "pes")),
                  ("pes_sigma", isinstance(self.pes_sigma, (int, float)) and 0 < self.pes_sigma < float("inf")),
                  ("validate_every", self.validate_every >= 0), ("validation_steps", self.validation_steps >= 1),
                  ("validation_seeds", self.validation_seeds >= 1),
                  ("validation_metric", self.validation_metric in VALIDATION_METRICS),
                  ("validation_margin", self.validation_margin >= 0),
                  ("meta_loss", self.meta_loss in META_LOSSES), ("behind_weight", self.behind_weight >= 0),
                  ("ahead_cap", self.ahead_cap is None or self.ahead_cap > 0),
                  ("auxiliary_lr", self.auxiliary_lr is None or self.auxiliary_lr > 0),
                  ("auxiliary_warmup", self.auxiliary_warmup >= 0),
                  ("validation_tasks", len(self.validation_tasks) > 0
                   and all(t in VALIDATION_TASKS for t in self.validation_tasks))]
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise ValueError(f"meta-training config: bad value for {bad[0]!r}: {getattr(self, bad[0])!r}")
        self.auxiliary = check_auxiliary(self.auxiliary or {})
        if self.estimator == "pes" and self.second_order:
            raise ValueError("meta-training config: second_order differentiates through the unrolls, which the "
                             "'pes' estimator runs without autograd")
        if not self.auxiliary and (self.auxiliary_parameters or self.auxiliary_lr is not None
                                   or self.auxiliary_warmup):
            raise ValueError("meta-training config: auxiliary_parameters, auxiliary_lr and auxiliary_warmup set "
                             "what auxiliary tasks train, and 'auxiliary' names none")
        if self.meta_loss == "relative" and self.estimator != "pes":
            raise ValueError("meta-training config: meta_loss 'relative' needs the 'pes' estimator (its reference "
                             "runs sit beside each antithetic pair)")
        if self.ahead_cap is not None and self.meta_loss != "relative":
            raise ValueError("meta-training config: ahead_cap caps the gain over the base rule of meta_loss "
                             "'relative'; it means nothing for meta_loss " + repr(self.meta_loss))

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["trajectory_length"] = list(self.trajectory_length)
        out["validation_tasks"] = list(self.validation_tasks)
        out["meta_parameters"] = list(self.meta_parameters)
        out["auxiliary_parameters"] = list(self.auxiliary_parameters)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MetaConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"meta-training config: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    @classmethod
    def from_yaml(cls, path: Union[str, Path], overrides: Optional[Mapping[str, Any]] = None) -> "MetaConfig":
        with Path(path).open() as f:
            data = yaml.safe_load(f)
        if data is None:
            raise ValueError(f"{path} is empty: a meta-training config is a mapping of fields")
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a meta-training config is a mapping of fields")
        return cls.from_dict({**data, **dict(overrides or {})})


def _check_types(cfg: MetaConfig) -> None:
    """Every field of the type its annotation names (an ``int`` field refuses 2.5 and ``true``, a
    ``float`` field refuses ``.inf`` and strings), before any range check."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        problem = None
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            problem = "an integer"
        elif kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            problem = "a finite number"
        elif kind == "bool" and not isinstance(value, bool):
            problem = "true or false"
        elif kind == "str" and not isinstance(value, str):
            problem = "a string"
        elif kind.startswith("Tuple[int") and not (isinstance(value, (list, tuple)) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)):
            problem = "a list of integers"
        elif kind.startswith("Tuple[str") and not (isinstance(value, (list, tuple)) and all(
                isinstance(v, str) for v in value)):
            problem = "a list of strings"
        elif kind.startswith("Dict[") and not isinstance(value, dict):
            problem = "a mapping"
        elif kind == "Optional[float]" and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            problem = "a finite number or null"
        if problem:
            raise ValueError(f"meta-training config: {f.name} must be {problem}, got {value!r}")

"""Truncated unrolls of inner training: the functional core of meta-training.

A :class:`Trajectory` is one optimizee being trained by the learned optimizer over many outer
steps; :func:`unroll` advances it by one truncation of ``K`` inner steps with the update network
kept in the autograd graph, and returns the truncation's meta-loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn import UpdateNet
from l2o_graphs.optim.update import OptState, base_update, init_state, learned_update
from l2o_graphs.tasks.suites import log_uniform
from l2o_graphs.tasks.task import Task, TaskSpec
from l2o_graphs.types import TensorDict

RATIO_FLOOR = 1e-6
"""Smallest loss ratio the meta-loss counts (its log is -13.8)."""
DIVERGED = 10.0
"""A trajectory whose loss passes this multiple of its start is ended."""


def sample_length(bounds: Tuple[int, int], generator: torch.Generator) -> int:
    """A trajectory length drawn log-uniformly from ``[low, high]``."""
    return int(round(log_uniform(*bounds, generator)))


@dataclass
class Trajectory:
    """One inner training run. ``params``/``buffers``/``state`` are None until first unrolled
    (in distributed runs, a rank holds only the trajectories it unrolls)."""

    spec: TaskSpec
    length: int  # inner steps before the trajectory is replaced
    step: int = 0
    base_loss: Optional[float] = None  # loss at the start: the per-task normaliser
    params: Optional[TensorDict] = None
    buffers: Optional[TensorDict] = None
    state: Optional[OptState] = None
    batches: torch.Generator = field(default_factory=torch.Generator)

    @property
    def done(self) -> bool:
        return self.step >= self.length

    def end(self) -> None:
        """Mark the run finished (it diverged, or another rank says so)."""
        self.step = max(self.step, self.length)

    def advance_schedule(self, steps: int) -> None:
        """Count ``steps`` inner steps unrolled by another process."""
        self.step += steps

    def to_dict(self) -> Dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only (loads with ``weights_only=True``)."""
        out: Dict[str, Any] = {"spec": self.spec.to_dict(), "length": self.length, "step": self.step,
                               "base_loss": self.base_loss, "batches": self.batches.get_state()}
        if self.params is not None:
            s = self.state
            out.update(params=self.params, buffers=self.buffers,
                       state={"momenta": s.momenta, "second_moment": s.second_moment, "net_state": s.net_state,
                              "updates": s.updates, "skipped": s.skipped, "step": s.step})
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, Any], device: torch.device) -> "Trajectory":
        batches = torch.Generator()
        batches.set_state(d["batches"])
        traj = cls(TaskSpec.from_dict(d["spec"]), d["length"], d["step"], d["base_loss"], batches=batches)
        if "params" in d:
            move = lambda t: {k: v.to(device) for k, v in t.items()}  # noqa: E731
            s = d["state"]
            traj.params, traj.buffers = move(d["params"]), move(d["buffers"])
            traj.state = OptState(move(s["momenta"]), move(s["second_moment"]), move(s["net_state"]),
                                  dict(s["updates"]), dict(s["skipped"]), s["step"])
        return traj


@dataclass
class TrajectoryPair:
    """An antithetic pair for PES: the same inner training run twice (same task, initialisation
    and batches), one with the meta-parameters plus the perturbations, one minus them; ``noise``
    ``[P]`` sums the perturbations the ``plus`` run received since it started (None before).
    ``reference``: for a meta-loss relative to the base rule, the same run a third time, trained
    by the rule's untrained form (:func:`~l2o_graphs.optim.update.base_update`); None otherwise."""

    plus: Trajectory
    minus: Trajectory
    noise: Optional[Tensor] = None
    reference: Optional[Trajectory] = None

    @classmethod
    def new(cls, spec: TaskSpec, length: int, reference: bool = False) -> "TrajectoryPair":
        return cls(Trajectory(spec, length), Trajectory(spec, length),
                   reference=Trajectory(spec, length) if reference else None)

    @property
    def runs(self) -> Tuple[Trajectory, ...]:
        """The pair's runs, its reference's included."""
        return (self.plus, self.minus) + ((self.reference,) if self.reference is not None else ())

    @property
    def done(self) -> bool:
        return self.plus.done or self.minus.done

    @property
    def step(self) -> int:
        return self.plus.step

    def end(self) -> None:
        """Mark every run finished (one diverged, or another rank says so)."""
        for run in self.runs:
            run.end()

    def advance_schedule(self, steps: int) -> None:
        """Count ``steps`` inner steps unrolled by another process."""
        for run in self.runs:
            run.advance_schedule(steps)

    def to_dict(self) -> Dict[str, Any]:
        out = {"plus": self.plus.to_dict(), "minus": self.minus.to_dict(), "noise": self.noise}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Dict[str, Any], device: torch.device) -> "TrajectoryPair":
        reference = Trajectory.from_dict(d["reference"], device) if "reference" in d else None
        return cls(Trajectory.from_dict(d["plus"], device), Trajectory.from_dict(d["minus"], device), d["noise"],
                   reference)


def start(traj: Trajectory, task: Task, net: UpdateNet) -> None:
    """Materialise the trajectory's initial parameters and optimizer state (in place)."""
    traj.params, traj.buffers = task.init_params()
    traj.state = init_state(traj.params, net)
    traj.batches.manual_seed(traj.spec.seed + 1)


def _detached(state: OptState) -> OptState:
    d = lambda t: {k: v.detach() for k, v in t.items()}  # noqa: E731
    return OptState(d(state.momenta), d(state.second_moment), d(state.net_state), dict(state.updates),
                    dict(state.skipped), state.step)


def unroll(net: UpdateNet, task: Task, graph: Optional[NeuralGraph], traj: Trajectory, steps: int, *,
           second_order: bool = False, lam: float = 0.01, diverged: float = DIVERGED,
           differentiable: bool = True, base_rule: bool = False, per_step: bool = False) -> Tensor:
    """Advance ``traj`` by ``steps`` learned updates (in place); return the meta-loss.

    The meta-loss is the mean, over the updates, of ``log(loss / loss at the trajectory's
    start)``, the optimizee's loss taken on a fresh batch right after each update: the ratio keeps
    any task from dominating by its scale, the log keeps a diverging trajectory from dominating
    the meta-gradient (its gradient is divided by its loss). With ``differentiable`` (truncated
    backprop) it is differentiable with respect to ``net``'s parameters through every update of
    the truncation. First order (default): the optimizee's gradients enter the updates as
    constants, as in Andrychowicz et al.; ``second_order=True`` differentiates through them too.
    Without ``differentiable`` (evolution strategies) the updates run without autograd, one step
    at a time, and the meta-loss is a plain number.
    With ``base_rule`` the trajectory is trained by the untrained form of ``net``'s rule instead
    (:func:`~l2o_graphs.optim.update.base_update`, no network forward, no autograd): the reference
    of :func:`relative_meta_loss`. ``per_step``: return the ``[steps]`` log-ratios, not their mean.
    Afterwards parameters and state are detached: the next truncation starts from them; a
    trajectory whose loss went above ``diverged`` times its start (or is not finite) is ended.
    """
    differentiable = differentiable and not base_rule
    params, loss = begin(traj, task, net)
    state = traj.state
    terms = []
    for k in range(steps):
        grads = torch.autograd.grad(loss, list(params.values()), retain_graph=differentiable and k > 0,
                                    create_graph=differentiable and second_order, allow_unused=True)
        with torch.set_grad_enabled(differentiable):
            if base_rule:
                new, state = base_update(net.update_rule, params, dict(zip(params, grads)), state, lam=lam)
            else:
                new, state = learned_update(net, graph, params, dict(zip(params, grads)), state, lam=lam)
        params = {n: new.get(n, p) for n, p in params.items()}
        if not differentiable:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
        # the loss on the next batch is both this update's meta-loss and the next update's input
        loss = task.loss(params, traj.buffers, *task.batch(traj.batches))
        terms.append(loss if differentiable else loss.detach())
    log_ratios = finish(traj, params, state, terms, diverged)
    return log_ratios if per_step else log_ratios.mean()


def begin(traj: Trajectory, task: Task, net: UpdateNet) -> Tuple[TensorDict, Tensor]:
    """A truncation's start: the trajectory's parameters (started if new) as leaves that require
    grad, and the loss on its next batch; records the trajectory's first loss."""
    if traj.params is None:
        start(traj, task, net)
    params = {n: p.detach().requires_grad_() for n, p in traj.params.items()}
    loss = task.loss(params, traj.buffers, *task.batch(traj.batches))
    if traj.base_loss is None:
        traj.base_loss = max(float(loss.detach()), 1e-8)
    return params, loss


def finish(traj: Trajectory, params: TensorDict, state: OptState, losses: List[Tensor],
           diverged: float = DIVERGED) -> Tensor:
    """A truncation's end: store the detached parameters and state, count the ``len(losses)``
    steps, end a trajectory whose last loss went above ``diverged`` times its start (or is not
    finite); returns the ``[steps]`` log ratios of ``losses`` to the trajectory's first loss."""
    traj.params = {n: p.detach() for n, p in params.items()}
    traj.state = _detached(state)
    traj.step += len(losses)
    end_if_diverged(traj, float(losses[-1].detach()), diverged)
    return log_ratios(losses, traj.base_loss)


def log_ratios(losses: Sequence[Tensor], base_loss: float) -> Tensor:
    """``[len(losses)]``: ``log(loss / base_loss)`` of each loss, the ratio floored at
    ``RATIO_FLOOR`` (a loss of exactly zero, an easy task fitted perfectly, would give log 0)."""
    return torch.log((torch.stack(list(losses)) / base_loss).clamp_min(RATIO_FLOOR))


def end_if_diverged(traj: Trajectory, last_loss: float, diverged: float = DIVERGED) -> None:
    """End ``traj`` when ``last_loss`` is above ``diverged`` times its first loss or not finite."""
    if not last_loss < diverged * traj.base_loss:  # also catches NaN
        traj.end()


def relative_meta_loss(log_ratios: Tensor, reference_log_ratios: Tensor, behind_weight: float,
                       ahead_cap: Optional[float] = None) -> Tensor:
    """The meta-loss of a truncation measured against the base rule on the same run.

    ``log_ratios`` and ``reference_log_ratios`` (``[K]``, from :func:`unroll` with ``per_step``)
    are the learned rule's and the base rule's log loss ratios after each update of the
    truncation, from the same initialisation on the same batches, so ``x``, the mean of their
    difference, is the mean ``log(L / L_base)`` over the truncation. The loss is
    ``x + behind_weight * max(x, 0)``: a truncation behind the base rule costs ``1 +
    behind_weight`` times what one as far ahead of it gains, so a change that wins on some tasks
    by losing on others is no longer a net gain. The hinge acts on the truncation's mean, not per
    step, so that batch-to-batch jitter around the base rule is not penalised. With
    ``ahead_cap`` c, a truncation more than c ahead (``x < -c``) counts as ``-c``: past the cap a
    task rewards nothing, so tasks that gain without end from one change (a larger step) cannot
    outvote those that lose by it. Zero when the learned rule is its base (an untrained
    zero-initialised network); a scalar.
    """
    x = (log_ratios - reference_log_ratios).mean()
    ahead = x if ahead_cap is None else x.clamp_min(-ahead_cap)
    return ahead + behind_weight * x.clamp_min(0)

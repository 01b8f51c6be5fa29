"""Update rules: how the update network's outputs become a step, one small pure function each.

A rule maps the network's per-element outputs ``(d, m)`` of one parameter tensor, together with
that tensor's optimizer state, to ``step`` (same shape as the parameter); the optimizer then sets
``p <- p * (1 - decay) - lr * step`` where ``lr`` is the param group's multiplier (1 by default)
and ``decay`` the decoupled weight decay. Rules are registered by name in :data:`RULES` (the name
is part of a network's config, so a rule is a word in a YAML file).

Rules marked ``zero_init`` start from a zero-initialised output layer: the untrained network
outputs ``(0, 0)`` and the rule is then exactly its hand-designed base rule; the learned part is
bounded, so that no output, however large, can blow the step up:

* ``paper`` (Kofinas et al.): ``step = lam * d * exp(lam * m)``; learned from scratch, unbounded.
* ``adam-residual``: ``step = (ADAM_STEP * a + lam * d) * exp(lam * m)`` with ``a`` Adam's
  direction; starts as Adam at ``ADAM_STEP``, unbounded.
* ``adam-scaled``: ``step = ADAM_STEP * (a * exp(LOG_SCALE_BOUND * tanh(m)) + tanh(d))``: Adam's
  step scaled per element by a factor in ``[1/10, 10]`` plus a correction of at most
  ``ADAM_STEP`` per element; ``|step| <= ADAM_STEP * (10 |a| + 1)``.
* ``normalized`` (in the spirit of Celo2): the direction ``v = a * exp(B (s - mean s)) + tanh(d)``
  (``s = tanh(m)``, ``B = LOG_SCALE_BOUND``) is divided by its RMS over the tensor and scaled by
  ``ADAM_STEP * exp(B * mean s)``: every tensor moves by an RMS of ``ADAM_STEP`` times a learned
  per-tensor factor in ``[1/10, 10]``, whatever the scale of its gradients. Untrained it is Adam's
  direction normalised per tensor (``step = ADAM_STEP * a / RMS(a)``).

* ``adam-pooled``: ``step = ADAM_STEP * a * exp(B * tanh(mean m) + B_N * tanh(row-mean d))``: Adam's
  step scaled by a learned factor per tensor (``mean m`` over the whole tensor, a factor in
  ``[1/10, 10]``) and one per neuron (``d`` averaged over each output neuron's incoming weights,
  the first dimension's rows; ``B_N = NEURON_LOG_SCALE_BOUND``, a factor in ``[1/2, 2]``).
  No per-element freedom: the network's context across a neuron's edges and across layers sets
  the scales, Adam sets the direction. ``|step| <= 20 * ADAM_STEP * |a|``.
* ``adam-layer``: ``adam-pooled`` with the per-tensor factor shared by a layer: a bias or
  normalisation parameter takes the factor of the weight feeding its neurons (``mean m`` over
  that weight, ``RuleState.layer_m``) instead of one of its own. Under ``adam-pooled`` the 1-D
  tensors' factors stay near 1 when the meta-training suite gives them little to gain, while
  behind a normalisation only these parameters' step size changes the function (a weight
  followed by BatchNorm is scale-invariant). Same bound.

``a`` is :func:`l2o_graphs.features.adam_direction` (bias-corrected momentum at beta 0.9 over the
root of the second moment).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from l2o_graphs.features import adam_direction, inv_rms

ADAM_STEP = 1e-3
"""Step size of the hand-designed base of the ``adam-*`` and ``normalized`` rules."""
LOG_SCALE_BOUND = math.log(10.0)
"""The learned log-scale of the bounded rules lies in ``[-LOG_SCALE_BOUND, LOG_SCALE_BOUND]``."""
NEURON_LOG_SCALE_BOUND = math.log(2.0)
"""``adam-pooled``'s per-neuron log-scale lies in ``[-NEURON_LOG_SCALE_BOUND, NEURON_LOG_SCALE_BOUND]``."""


class RuleState(NamedTuple):
    """What a rule may read of one tensor besides the network's outputs.

    ``momenta``: ``[*shape, 5]`` (after this step's gradient), ``second``: ``[*shape]``,
    ``updates``: how many updates the tensor's moments have received, this one included (>= 1),
    ``lam``: the optimizer's ``lam``, ``layer_m``: the mean of the network's ``m`` output over the
    tensor's layer, a scalar (the weight's own ``m`` for a weight; for a bias or normalisation
    parameter, that of the weight feeding its neurons, :attr:`NeuralGraph.layer_owner`); None:
    the tensor is its own layer (``m.mean()``)."""

    momenta: Tensor
    second: Tensor
    updates: int
    lam: float
    layer_m: Optional[Tensor] = None


RuleFn = Callable[[Tensor, Tensor, RuleState], Tensor]


@dataclass(frozen=True)
class UpdateRule:
    """A registered rule: ``fn(d, m, state) -> step`` (``d``, ``m`` and ``step`` all shaped like
    the parameter); ``zero_init``: the network's output layer starts at zero, so that the
    untrained network takes exactly the base rule's step; ``pools_layers``: the rule reads
    ``state.layer_m``, which the optimizer then fills from the neural graph's layers."""

    name: str
    fn: RuleFn
    zero_init: bool
    pools_layers: bool = False


def paper(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    return d * torch.exp(m * state.lam) * state.lam


def adam_residual(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    a = adam_direction(state.momenta, state.second, state.updates)
    return (d + (ADAM_STEP / state.lam) * a) * torch.exp(m * state.lam) * state.lam


def adam_scaled(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    a = adam_direction(state.momenta, state.second, state.updates)
    return ADAM_STEP * torch.addcmul(torch.tanh(d), a, torch.exp(LOG_SCALE_BOUND * torch.tanh(m)))


def normalized(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    a = adam_direction(state.momenta, state.second, state.updates)
    s = torch.tanh(m)
    s_mean = s.mean()
    v = torch.addcmul(torch.tanh(d), a, torch.exp(LOG_SCALE_BOUND * (s - s_mean)))
    return v * (ADAM_STEP * torch.exp(LOG_SCALE_BOUND * s_mean) * inv_rms(v, tuple(range(v.dim()))))


def neuron_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` (``[out, ...]``) over all dimensions but the first, kept for broadcasting
    (``[out, 1, ...]``); a 1-D tensor is its own per-neuron value."""
    return x.mean(dim=tuple(range(1, x.dim())), keepdim=True) if x.dim() > 1 else x


def pooled_log_scales(d: Tensor, m_mean: Tensor) -> Tuple[Tensor, Tensor]:
    """The learned log-scales of ``adam-pooled`` and ``adam-layer``: the tensor's (a scalar, from
    ``m_mean``, the mean of ``m`` over the tensor or its layer) and each output neuron's
    (``[out, 1, ...]``, from ``d``'s row means)."""
    return LOG_SCALE_BOUND * torch.tanh(m_mean), NEURON_LOG_SCALE_BOUND * torch.tanh(neuron_mean(d))


def _adam_times_pooled(d: Tensor, m_mean: Tensor, state: RuleState) -> Tensor:
    a = adam_direction(state.momenta, state.second, state.updates)
    layer, neuron = pooled_log_scales(d, m_mean)
    return ADAM_STEP * a * torch.exp(layer + neuron)


def adam_pooled(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    return _adam_times_pooled(d, m.mean(), state)


def layer_mean(m: Tensor, state: RuleState) -> Tensor:
    """The mean of ``m`` that ``adam-layer``'s per-layer factor reads: ``state.layer_m`` (the mean
    over the weight of the tensor's layer) when the caller filled it, else the mean over ``m``."""
    return m.mean() if state.layer_m is None else state.layer_m


def adam_layer(d: Tensor, m: Tensor, state: RuleState) -> Tensor:
    return _adam_times_pooled(d, layer_mean(m, state), state)


RULES: Dict[str, UpdateRule] = {rule.name: rule for rule in (
    UpdateRule("paper", paper, zero_init=False),
    UpdateRule("adam-residual", adam_residual, zero_init=True),
    UpdateRule("adam-scaled", adam_scaled, zero_init=True),
    UpdateRule("normalized", normalized, zero_init=True),
    UpdateRule("adam-pooled", adam_pooled, zero_init=True),
    UpdateRule("adam-layer", adam_layer, zero_init=True, pools_layers=True),
)}
UPDATE_RULES = tuple(RULES)


def get_rule(name: str) -> UpdateRule:
    """The rule registered as ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in RULES:
        raise ValueError(f"unknown update rule {name!r}; choose one of {', '.join(RULES)}")
    return RULES[name]

"""The learned update as a pure function: ``(params, grads, state, net) -> (new params, new state)``.

Meta-training differentiates through :func:`learned_update`; :class:`NeuralGraphOptimizer` is a
thin stateful shell around it. No tensor passed in is modified.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from l2o_graphs import features as feats
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn import UpdateNet
from l2o_graphs.nn.base import FeatureInputs
from l2o_graphs.rules import RULES, RuleState, UpdateRule, get_rule
from l2o_graphs.types import TensorDict

PerTensor = Union[float, Mapping[str, float]]


@dataclass
class OptState:
    """Optimizer state of a whole model, keyed by parameter name.

    ``momenta[name]``: ``[*shape, 5]`` float32; ``second_moment[name]``: ``[*shape]`` float32;
    ``net_state[name]``: the net's per-tensor recurrent state; ``updates[name]``: how many updates
    the tensor received; ``skipped[name]``: how many were skipped for a non-finite gradient;
    ``step``: the global step count (time features).
    """

    momenta: TensorDict
    second_moment: TensorDict
    net_state: TensorDict
    updates: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, int] = field(default_factory=dict)
    step: int = 0


def init_state(params: Mapping[str, Tensor], net: Optional[UpdateNet]) -> OptState:
    """The state before the first step; ``net`` None: no network state (for :func:`base_update`)."""
    momenta, second = feats.init_moments(params)
    net_state = net.init_net_state(params) if net is not None else {}
    return OptState(momenta, second, net_state, {n: 0 for n in params}, {n: 0 for n in params})


def _per_tensor(value: PerTensor, name: str) -> float:
    return float(value[name]) if isinstance(value, Mapping) else float(value)


def all_finite(t: Tensor) -> bool:
    """No NaN or inf in ``t`` (any numeric dtype): one reduction (the largest magnitude is NaN or inf if any element
    is), cheaper than an elementwise test and an ``all``."""
    return t.numel() == 0 or bool(torch.isfinite(t.detach().abs().amax()))


def learned_update(net: UpdateNet, graph: Optional[NeuralGraph], params: Mapping[str, Tensor],
                   grads: Mapping[str, Optional[Tensor]], state: OptState, *, lr: PerTensor = 1.0,
                   weight_decay: PerTensor = 0.0, lam: float = 0.01,
                   workspace: Optional[TensorDict] = None, kernels: str = "torch") -> Tuple[TensorDict, OptState]:
    """One learned step.

    Args:
        net: the update network (its parameters are the meta-parameters).
        graph: the optimizee's neural graph (None for nets that do not use it).
        params: every parameter of the optimizee, in the graph's order (they all enter the graph).
        grads: gradient per name; None (or a missing name) leaves that tensor untouched. A tensor
            whose gradient or value holds NaN or inf is not updated either, its moments are not
            advanced, its gradient (and a non-finite value) enter the features as zeros (it cannot
            poison its neighbours), and ``skipped[name]`` counts it. So does a tensor whose
            computed update is not finite: it keeps its value and its previous moments.
        state: from :func:`init_state` or a previous call.
        lr: multiplier on the learned step (per name or one for all), times the net's
            :attr:`~l2o_graphs.nn.UpdateNet.step_scale`.
        weight_decay: decoupled weight decay, ``p <- p - lr * lam * weight_decay * p``.
        lam: the step scale of the ``paper`` and ``adam-residual`` rules (``delta = -lr * d * lam *
            exp(m * lam)`` for ``paper``); the net's ``update_rule`` names the rule that turns its
            outputs into a step (:mod:`l2o_graphs.rules`).
        workspace: a dict the caller keeps between calls (:class:`NeuralGraphOptimizer` does): the
            feature buffers (``NUM_FEATURES`` values per parameter) are reused from it instead of
            allocated every call: on CPUs faulting in fresh pages for them costs more than
            filling them. Only used while autograd is off; never read by the caller.
        kernels: how the network's per-edge work runs (``"torch"``, ``"triton"`` or ``"auto"``:
            :meth:`~l2o_graphs.nn.UpdateNet.resolve_kernels`). With Triton under bfloat16
            autocast the features are stored in bfloat16 too.
    Returns:
        New parameters (float32 computation, float64 for float64 parameters, cast back to each
        parameter's dtype) for the names that were updated, and the new state. The network reads
        its features in its own dtype.
    """
    step = state.step + 1
    moments = _advance_moments(params, grads, state)
    device = next(iter(params.values())).device
    kernels = net.resolve_kernels(kernels, device)
    time = feats.time_features(step, device=device).to(net.compute_dtype)
    inputs = {name: FeatureInputs(*moments.inputs[name], moments.momenta[name], moments.second[name],
                                  max(1, moments.updates[name])) for name in params}
    features = net.build_features(graph, inputs, net.feature_dtype(kernels, device), workspace)
    outputs, net_state = net(features, time, graph, state.net_state, kernels=kernels)
    rule = get_rule(net.update_rule)
    owner = graph.layer_owner if rule.pools_layers and graph is not None else {}
    scale = net.step_scale
    if scale != 1.0:
        lr = {n: _per_tensor(lr, n) * scale for n in params}
    new_params, new_state = _apply_rule(rule, outputs, owner, params, state, moments, lr, weight_decay, lam)
    new_state.net_state = {n: (net_state[n] if n in new_params else state.net_state[n]) for n in state.net_state}
    return new_params, new_state


def base_update(rule_name: str, params: Mapping[str, Tensor], grads: Mapping[str, Optional[Tensor]],
                state: OptState, *, lr: PerTensor = 1.0, weight_decay: PerTensor = 0.0,
                lam: float = 0.01) -> Tuple[TensorDict, OptState]:
    """The step of a ``zero_init`` rule's untrained network, without a network: every output is
    zero, so the rule is its hand-designed base (``adam-layer``: Adam at ``ADAM_STEP``).

    Equal, bit for bit, to :func:`learned_update` with a network of that rule whose output layer
    is still zero (same arguments, same handling of non-finite values); the state's ``net_state``
    is passed on unchanged. This is the reference a learned rule is measured against during
    meta-training, at the cost of the moments alone.
    """
    rule = get_rule(rule_name)
    if not rule.zero_init:
        raise ValueError(f"update rule {rule_name!r} is learned from scratch: it has no base rule to take "
                         f"(choose one of {', '.join(n for n, r in RULES.items() if r.zero_init)})")
    moments = _advance_moments(params, grads, state)
    zeros = {name: torch.zeros(*params[name].shape, 2, device=params[name].device) for name in moments.active}
    return _apply_rule(rule, zeros, {}, params, state, moments, lr, weight_decay, lam)


@dataclass
class _Moments:
    """One step's moments: ``inputs[name] = (value, gradient)`` as the features read them (zeros
    in place of non-finite ones), ``active``: the names whose moments advanced."""

    momenta: TensorDict
    second: TensorDict
    inputs: Dict[str, Tuple[Tensor, Tensor]]
    active: List[str]
    updates: Dict[str, int]
    skipped: Dict[str, int]


def _advance_moments(params: Mapping[str, Tensor], grads: Mapping[str, Optional[Tensor]], state: OptState) -> _Moments:
    momenta, second = dict(state.momenta), dict(state.second_moment)
    skipped = dict(state.skipped)
    active, inputs, updates = [], {}, {}
    for name, p in params.items():
        g = grads.get(name)
        finite_value = all_finite(p)
        if g is not None and finite_value and all_finite(g):
            momenta[name], second[name] = feats.accumulate(g, state.momenta[name], state.second_moment[name])
            active.append(name)
        else:
            if g is not None:
                skipped[name] = skipped.get(name, 0) + 1
            g = torch.zeros_like(p)
            if not finite_value:
                p = torch.zeros_like(p)
        inputs[name] = (p, g)
        updates[name] = state.updates.get(name, 0) + (name in active)
    return _Moments(momenta, second, inputs, active, updates, skipped)


def _apply_rule(rule: UpdateRule, outputs: Mapping[str, Tensor], owner: Mapping[str, str],
                params: Mapping[str, Tensor], state: OptState, moments: _Moments, lr: PerTensor,
                weight_decay: PerTensor, lam: float) -> Tuple[TensorDict, OptState]:
    """Turn ``outputs[name]`` (``[*shape, 2]``: direction, magnitude) into new values of the
    active tensors by ``rule``; ``owner`` maps a tensor to the weight whose mean ``m`` its layer
    shares (empty: none). ``net_state`` of the returned state is the old one (the caller's)."""
    momenta, second, skipped = dict(moments.momenta), dict(moments.second), dict(moments.skipped)
    new_params: TensorDict = {}
    layer_means: Dict[str, Tensor] = {}
    for name in moments.active:
        p = params[name]
        dtype = feats.compute_dtype(p)
        direction, magnitude = outputs[name].to(dtype).unbind(-1)  # float32 even under autocast
        layer_m = None
        if name in owner:  # a weight's mean serves its biases and norms too: computed once
            if owner[name] not in layer_means:
                layer_means[owner[name]] = outputs[owner[name]][..., 1].to(dtype).mean()
            layer_m = layer_means[owner[name]]
        step_size = rule.fn(direction, magnitude,
                            RuleState(momenta[name], second[name], state.updates.get(name, 0) + 1, lam, layer_m))
        rate = _per_tensor(lr, name)
        decay = rate * lam * _per_tensor(weight_decay, name)
        base = p.to(dtype) * (1 - decay) if decay else p.to(dtype)
        value = torch.add(base, step_size, alpha=-rate).to(p.dtype)
        if all_finite(value):
            new_params[name] = value
        else:  # written, it would spread to every tensor at the next step: skip it like a bad gradient
            momenta[name], second[name] = state.momenta[name], state.second_moment[name]
            skipped[name] = skipped.get(name, 0) + 1
    updates = {n: state.updates.get(n, 0) + (n in new_params) for n in params}
    return new_params, OptState(momenta, second, dict(state.net_state), updates, skipped, state.step + 1)

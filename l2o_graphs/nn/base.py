"""The interface every learned-update network implements, and small shared pieces."""
from __future__ import annotations

import abc
import math
from typing import Callable, Mapping, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from l2o_graphs.chunks import chunk_elements, row_ranges
from l2o_graphs.features import NUM_FEATURES, element_features
from l2o_graphs.graph import GraphBatch, NeuralGraph
from l2o_graphs.rules import get_rule
from l2o_graphs.types import TensorDict

KERNELS = ("auto", "triton", "torch")
"""How a network's per-edge work runs: ``"torch"`` (the reference, any device, autograd),
``"triton"`` (fused GPU kernels, forward only, for the nets that have them: :mod:`l2o_graphs.nn.edge_kernels`)
or ``"auto"`` (Triton where it can run on a CUDA device, PyTorch otherwise)."""


def check_kernels(kernels: str) -> str:
    """``kernels`` if it is one of :data:`KERNELS`; ``ValueError`` naming them otherwise."""
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; choose one of {', '.join(KERNELS)}")
    return kernels


class FlatFeatures(NamedTuple):
    """Features of all parameters in one ``[P, F]`` tensor, rows in parameter order;
    ``shapes`` lists ``(name, param.shape)``."""

    flat: Tensor
    shapes: list


class GraphFeatures(NamedTuple):
    """Features already laid out on a neural graph: ``node_x [N, S, F]``, ``edge_x [E, K, F]``."""

    node_x: Tensor
    edge_x: Tensor


class FeatureInputs(NamedTuple):
    """What one parameter tensor's features are computed from (:func:`~l2o_graphs.features.element_features`):
    its value and gradient ``[*S]``, momenta ``[*S, 5]``, second moment ``[*S]`` and how many
    updates its moments have seen (>= 1)."""

    param: Tensor
    grad: Tensor
    momenta: Tensor
    second: Tensor
    step: int


def workspace_buffer(workspace: Optional[TensorDict], key: str, size: Tuple[int, ...], zero: bool,
                     device: torch.device, dtype: torch.dtype) -> Tensor:
    """A ``size`` buffer: ``workspace[key]`` when it matches (kept there for the next call) and
    autograd is off, else a fresh one. Zero-filled when ``zero``; a reused buffer then keeps
    zeros wherever no parameter writes, as every call writes the same positions."""
    reuse = workspace is not None and not torch.is_grad_enabled()
    if reuse:
        buffer = workspace.get(key)
        if buffer is not None and buffer.shape == size and buffer.dtype == dtype and buffer.device == device:
            return buffer
    buffer = (torch.zeros if zero else torch.empty)(size, device=device, dtype=dtype)
    if reuse:
        workspace[key] = buffer
    return buffer


class UpdateNet(nn.Module, abc.ABC):
    """Maps per-element features to a per-element (direction, magnitude) pair.

    ``forward(features, time, graph, net_state) -> (outputs, new_net_state)`` where
    ``features[name]`` is ``[*param.shape, F]`` (or the same values already laid out: graph nets
    take :class:`GraphFeatures`, the others :class:`FlatFeatures`), ``time`` is ``[T]`` (global time features),
    ``graph`` the optimizee's neural graph (None for nets that do not use it), ``net_state`` a dict
    of per-tensor recurrent state (``{}`` for stateless nets) and ``outputs[name]`` is
    ``[*param.shape, 2]``. Implementations must not mix information across graphs of a batch.
    ``kernels`` (:data:`KERNELS`) chooses how the per-edge work runs where a net has kernels.
    """

    uses_graph: bool = False

    def __init__(self, **config: object):
        super().__init__()
        get_rule(config.setdefault("update", "paper"))  # refuses unknown names
        self.config = dict(config)

    @property
    def update_rule(self) -> str:
        """How ``(d, m)`` become a step (a name in :data:`l2o_graphs.rules.RULES`)."""
        return str(self.config["update"])

    @property
    def step_scale(self) -> float:
        """A constant factor on every step the network's rule takes (``config["step_scale"]``, 1
        unless set): a step size chosen on meta-validation tasks travels with the weights, and a
        user's ``lr`` multiplies it."""
        return float(self.config.get("step_scale", 1.0))

    def _init_output(self, layer: nn.Linear) -> None:
        """The layer producing ``(d, m)``: zero under rules marked ``zero_init``, so that the
        untrained network takes exactly the rule's hand-designed step and meta-training learns a
        bounded change of it."""
        if get_rule(self.update_rule).zero_init:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def resolve_kernels(self, kernels: str, device: torch.device) -> str:
        """``"torch"`` or ``"triton"``: what the choice ``kernels`` (one of :data:`KERNELS`) means
        for this network on ``device``, with autograd as it is now. ``"auto"`` takes Triton only
        on CUDA devices where it can run; ``"triton"`` raises ``ValueError`` saying why where it
        cannot."""
        if check_kernels(kernels) == "torch" or (kernels == "auto" and device.type != "cuda"):
            return "torch"
        why_not = self.kernels_unusable(device)
        if why_not is None:
            return "triton"
        if kernels == "triton":
            raise ValueError(f"kernels='triton' cannot run here: {why_not}")
        return "torch"

    def kernels_unusable(self, device: torch.device) -> Optional[str]:
        """Why the Triton kernels cannot run for this network on ``device`` now; None when they can."""
        return f"{type(self).__name__} has no Triton kernels (only NG-GNN has)"

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the network computes in (its first floating parameter's; float32 without one)."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def feature_dtype(self, kernels: str, device: torch.device) -> torch.dtype:
        """The dtype the network reads its features in when its edge work runs as ``kernels``
        (resolved: ``"torch"`` or ``"triton"``) on ``device``."""
        return self.compute_dtype

    def build_features(self, graph: Optional[NeuralGraph], inputs: Mapping[str, FeatureInputs], dtype: torch.dtype,
                       workspace: Optional[TensorDict] = None) -> Union[FlatFeatures, GraphFeatures]:
        """Every tensor's features in the layout this network reads (here one ``[P, F]`` table,
        :class:`FlatFeatures`), in ``dtype``. Without autograd they are written in place into a
        buffer kept in ``workspace`` between calls; under autograd they are concatenated (a slice
        write per tensor would give every write a backward that copies the whole gradient)."""
        if torch.is_grad_enabled():
            flat = torch.cat([element_features(*x).reshape(-1, NUM_FEATURES) for x in inputs.values()]).to(dtype)
        else:
            first = next(iter(inputs.values())).param
            total = sum(x.param.numel() for x in inputs.values())
            flat = workspace_buffer(workspace, "flat", (total, NUM_FEATURES), False, first.device, dtype)
            start = 0
            for x in inputs.values():
                count = x.param.numel()
                element_features(*x, out=flat[start:start + count].view(*x.param.shape, NUM_FEATURES))
                start += count
        return FlatFeatures(flat, [(name, x.param.shape) for name, x in inputs.items()])

    def init_net_state(self, params: Mapping[str, Tensor]) -> TensorDict:
        """Per-tensor recurrent state at step 0, one tensor per parameter name (float32)."""
        return {}

    @abc.abstractmethod
    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor], kernels: str = "torch") -> Tuple[TensorDict, TensorDict]:
        """See the class docstring; ``kernels``: see :meth:`resolve_kernels`."""


def feed_forward(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    """``layers`` linear layers with ReLU between them."""
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        modules.append(nn.Linear(a, b))
        if i < layers - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


POS_DIM = 16
"""Width of each sinusoidal position code (a node's depth, its index, a kernel offset)."""


def node_positions(graph: Union[NeuralGraph, GraphBatch]) -> Tensor:
    """``[N, 2 * POS_DIM]``: each node's depth and (for non-permutable nodes) index within its
    group, sinusoidally encoded; all hidden nodes of one layer get the same vector."""
    return torch.cat([sinusoidal(graph.node_layer, POS_DIM), sinusoidal(graph.node_index + 1, POS_DIM)], -1)


def structure_embedding(graph: Union[NeuralGraph, GraphBatch], role: nn.Embedding, activation: nn.Embedding,
                        position: nn.Linear, dtype: torch.dtype) -> Tensor:
    """``[N, d]``: what a node is, independent of any parameter value: its role, its activation
    and its position (:func:`node_positions`), each embedded, summed. The graph encoders of the
    optimizer's networks and of the weight-space models share it."""
    return role(graph.node_role) + activation(graph.node_activation) + position(node_positions(graph).to(dtype))


def sinusoidal(x: Tensor, dim: int, max_period: float = 1000.0) -> Tensor:
    """``[*x.shape, dim]`` sin/cos embedding of (integer or real) positions ``x``; defined for any
    value, so sizes unseen in training still embed."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = x.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], -1)


def flatten_features(features: Union[Mapping[str, Tensor], FlatFeatures]) -> Tuple[Tensor, list]:
    """``[P, F]`` features and the ``(name, shape)`` list to split outputs back with."""
    if isinstance(features, FlatFeatures):
        return features.flat, features.shapes
    shapes = [(n, f.shape[:-1]) for n, f in features.items()]
    flat = torch.cat([f.reshape(-1, f.shape[-1]) for f in features.values()])
    return flat, shapes


def chunked(fn: Callable[[int, int], Tensor], num_rows: int, device: torch.device) -> Tensor:
    """``fn(start, stop)`` over ranges of ``chunk_elements(device)`` rows (see
    :mod:`l2o_graphs.chunks`), concatenated."""
    parts = [fn(a, b) for a, b in row_ranges(num_rows, chunk_elements(device))]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def split_outputs(flat: Tensor, shapes: list) -> TensorDict:
    """Inverse of :func:`flatten_features` for an output ``[P, O]``."""
    sizes = [int(torch.Size(s).numel()) for _, s in shapes]
    return {n: part.reshape(*s, flat.shape[-1]) for (n, s), part in zip(shapes, torch.split(flat, sizes))}

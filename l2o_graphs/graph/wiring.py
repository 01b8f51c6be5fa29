"""Read the wiring of an ``nn.Module`` into a :class:`NeuralGraph`.

The reader follows ``torch.fx`` symbolic tracing when it works, tracking for every traced value
which graph nodes its channels (or features) are. Linear and convolution layers create a new
layer of nodes and one edge per (output, input) channel pair; norms and biases land on the
nodes they act on; residual additions add identity edges. When tracing fails it falls back to
the order in which modules were registered, and says so.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Dict, Hashable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, fx, nn

from l2o_graphs.graph.builder import GraphBuilder
from l2o_graphs.graph.layout import (
    ACTIVATIONS, ROLE_FIXED, ROLE_HIDDEN, ROLE_INPUT, SLOT_BIAS, SLOT_NORM_BIAS, SLOT_NORM_WEIGHT,
    SLOT_OTHER)

if TYPE_CHECKING:
    from l2o_graphs.graph.neural_graph import NeuralGraph

_ACTIVATION_MODULES = {
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.GELU: "gelu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu", nn.LeakyReLU: "leaky_relu", nn.ELU: "elu", nn.Softplus: "softplus",
    nn.Hardswish: "hardswish", nn.Mish: "mish", nn.PReLU: "prelu", nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}
_ACTIVATION_FUNCTIONS = {"relu": "relu", "relu_": "relu", "relu6": "relu", "gelu": "gelu", "tanh": "tanh",
                         "sigmoid": "sigmoid", "silu": "silu", "leaky_relu": "leaky_relu", "elu": "elu",
                         "softplus": "softplus", "hardswish": "hardswish", "mish": "mish",
                         "softmax": "softmax", "log_softmax": "log_softmax", "sin": "sin"}
# Ops that keep the channels of their first argument where they are.
_PRESERVING = {"dropout", "dropout1d", "dropout2d", "contiguous", "clone", "detach", "float", "to",
               "clamp", "clip", "abs", "neg", "pad", "interpolate", "max_pool1d", "max_pool2d",
               "avg_pool1d", "avg_pool2d", "lp_pool2d", "type_as", "square", "pow", "exp", "sqrt"}
_SCALING = {"mul", "imul", "truediv", "itruediv", "div"}
_ADDING = {"add", "iadd", "sub", "isub"}
_PRESERVING_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
                       nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Upsample,
                       nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ReflectionPad2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)

UNKNOWN = "unknown"
"""Spatial size of a feature map whose size the reader does not know."""


class NeuralGraphWarning(UserWarning):
    """The neural graph was built with a documented fallback (module order, unplaced tensors)."""


@dataclass
class _Input:
    """The neurons of one module input, created when a layer first consumes it."""

    name: str
    nodes: Optional[Tensor] = None


@dataclass(frozen=True)
class _Layout:
    """Which graph nodes the channels of a traced value are.

    ``nodes`` is None for a module input not consumed yet (then ``source`` holds it).
    ``spatial`` is None for a feature vector, else the map's spatial size (or UNKNOWN).
    ``flat_from`` is the spatial size of the map a vector was flattened from.
    """

    nodes: Optional[Tensor]
    depth: int = 0
    spatial: Union[None, str, Tuple[int, ...]] = None
    flat_from: Union[None, str, Tuple[int, ...]] = None
    source: Optional[_Input] = None


class _Opaque:
    """A tensor whose channels the reader could not follow."""

    def __repr__(self) -> str:
        return "OPAQUE"


OPAQUE = _Opaque()


class _Reader:
    """Walks a traced graph (or the module list) and feeds a GraphBuilder."""

    def __init__(self, module: nn.Module, traced: bool, graph_class: type) -> None:
        self.module = module
        self.traced = traced
        self.builder = GraphBuilder(graph_class)
        self.notes: List[str] = []
        # A tensor shared by several modules (tied weights) is placed once, under the name that
        # ``named_parameters()`` gives it (the first); its other uses are not wired.
        self.canonical = {id(p): name for name, p in module.named_parameters()}

    def _name(self, tensor: Tensor) -> str:
        return self.canonical[id(tensor)]

    # ---------------------------------------------------------------- neurons
    def _fresh_inputs(self, count: int, why: str) -> Tensor:
        self.notes.append(why)
        return self.builder.add_nodes(count, 0, ROLE_INPUT)

    def _neurons(self, value: Any, count: int, consumer: str, allow_flatten: bool
                 ) -> Tuple[Tensor, Tuple[int, int], int]:
        """The ``count`` input channels of a layer reading ``value``.

        Returns (nodes [C], kernel (kh, kw) contributed by a flattened map, depth)."""
        if not isinstance(value, _Layout):
            nodes = self._fresh_inputs(count, f"{consumer}: its input could not be followed; "
                                              f"its {count} input channels became new input neurons")
            return nodes, (1, 1), 0
        if value.nodes is None:
            src = value.source
            if src.nodes is None:
                src.nodes = self.builder.add_nodes(count, 0, ROLE_INPUT)
            if src.nodes.numel() != count:
                nodes = self._fresh_inputs(count, f"{consumer}: input {src.name!r} has {src.nodes.numel()} "
                                                  f"neurons, layer expects {count}; new input neurons")
                return nodes, (1, 1), 0
            return src.nodes, (1, 1), 0
        channels = value.nodes.numel()
        if channels == count:
            return value.nodes, (1, 1), value.depth
        spatial = value.flat_from if value.flat_from is not None else (value.spatial if allow_flatten else None)
        if spatial is not None and count % channels == 0:
            return value.nodes, self._flat_kernel(spatial, count // channels, consumer), value.depth
        nodes = self._fresh_inputs(count, f"{consumer}: expects {count} inputs but its input has {channels} "
                                          f"channels; new input neurons")
        return nodes, (1, 1), 0

    def _flat_kernel(self, spatial: Union[str, Tuple[int, ...]], area: int, consumer: str) -> Tuple[int, int]:
        if isinstance(spatial, tuple) and math.prod(spatial) == area:
            return (1, spatial[0]) if len(spatial) == 1 else (spatial[0], math.prod(spatial[1:]))
        side = math.isqrt(area)
        if side * side == area:
            return side, side
        self.notes.append(f"{consumer}: reads a flattened map of {area} positions of unknown shape; "
                          f"stored as a 1x{area} kernel (pass example_input to fix the shape)")
        return 1, area

    # ---------------------------------------------------------------- layers with parameters
    def _dense(self, prefix: str, weight: Tensor, value: Any, in_channels: int,
               out_channels: int, groups: int, kernel: Tuple[int, int], allow_flatten: bool,
               out_role: int = ROLE_HIDDEN) -> Tuple[Tensor, Tensor, int]:
        """Edges of a (grouped) dense connection; returns (input nodes, output nodes, depth)."""
        nodes, flat_kernel, depth = self._neurons(value, in_channels, prefix, allow_flatten)
        if flat_kernel != (1, 1):  # a linear layer reading a flattened map: one edge per channel
            kernel, in_channels = flat_kernel, nodes.numel()
        out = self.builder.add_nodes(out_channels, depth + 1, out_role)
        if groups == 1:
            self.builder.add_dense_weight(self._name(weight), weight.shape, nodes, out, kernel)
            return nodes, out, depth + 1
        in_per_group, out_per_group = in_channels // groups, out_channels // groups
        o = torch.arange(out_channels).repeat_interleave(in_per_group)
        j = torch.arange(in_per_group).repeat(out_channels)
        src = nodes[(o // out_per_group) * in_per_group + j]
        self.builder.add_weight(self._name(weight), weight.shape, src, out[o], kernel)
        return nodes, out, depth + 1

    def _place_on_nodes(self, tensor: Optional[Tensor], nodes: Tensor, kind: int) -> None:
        """Place a 1-D parameter (skipped when the module has none, e.g. ``bias=False``)."""
        if tensor is not None:
            self.builder.add_node_param(self._name(tensor), tensor.shape, nodes, kind)

    def call_module(self, prefix: str, module: nn.Module, args: Tuple[Any, ...]) -> Any:
        """The layout of ``module(*args)``; places the module's own parameters."""
        params = list(module.parameters(recurse=False))
        if any(self._name(t) in self.builder.placed for t in params):
            self.notes.append(f"{prefix}: its parameters are already placed (the module is called more than "
                              f"once, or shares weights with an earlier layer); only the first use is wired")
            return OPAQUE
        x = args[0] if args else OPAQUE
        if isinstance(module, nn.Linear):
            _, out, depth = self._dense(prefix, module.weight, x, module.in_features,
                                        module.out_features, 1, (1, 1), allow_flatten=not self.traced)
            self._place_on_nodes(module.bias, out, SLOT_BIAS)
            return _Layout(out, depth)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            k = tuple(module.kernel_size)
            kernel = (1, k[0]) if len(k) == 1 else k
            _, out, depth = self._dense(prefix, module.weight, x, module.in_channels,
                                        module.out_channels, module.groups, kernel, allow_flatten=False)
            self._place_on_nodes(module.bias, out, SLOT_BIAS)
            return _Layout(out, depth, spatial=UNKNOWN)
        if isinstance(module, nn.MultiheadAttention):
            return self._attention(prefix, module, x)
        if isinstance(module, _NORMS):
            return self._norm(prefix, module, x)
        if type(module) in _ACTIVATION_MODULES:
            name = _ACTIVATION_MODULES[type(module)]
            out = self._activate(x, name)
            if isinstance(module, nn.PReLU) and isinstance(out, _Layout) and out.nodes is not None \
                    and module.weight.numel() == out.nodes.numel():
                self._place_on_nodes(module.weight, out.nodes, SLOT_OTHER)
            return out
        if isinstance(module, nn.Flatten):
            return self._flatten(x)
        if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d,
                               nn.AdaptiveMaxPool2d)):
            size = module.output_size
            size = (size,) * (2 if "2d" in type(module).__name__ else 1) if isinstance(size, int) else size
            return self._resize(x, tuple(size) if all(isinstance(s, int) for s in size) else UNKNOWN)
        if isinstance(module, _PRESERVING_MODULES):
            return self._resize(x, UNKNOWN) if isinstance(x, _Layout) and x.spatial is not None else x
        if params:
            self.notes.append(f"{prefix or 'root'}: {type(module).__name__} is not understood; "
                              f"its parameters get block graphs of their own")
        return OPAQUE

    def _attention(self, prefix: str, module: nn.MultiheadAttention, x: Any) -> Any:
        p = f"{prefix}." if prefix else ""
        if module.in_proj_weight is None or not isinstance(x, _Layout):
            self.notes.append(f"{prefix}: attention with separate q/k/v dimensions is not understood")
            return OPAQUE, OPAQUE
        dim = module.embed_dim
        # q, k and v neurons are not freely permutable (heads couple them): ROLE_FIXED.
        _, qkv, depth = self._dense(prefix, module.in_proj_weight, x, dim, 3 * dim,
                                    1, (1, 1), allow_flatten=False, out_role=ROLE_FIXED)
        self._place_on_nodes(module.in_proj_bias, qkv, SLOT_BIAS)
        out_proj = module.out_proj
        v_nodes = _Layout(qkv[2 * dim:], depth)
        _, out, depth = self._dense(p + "out_proj", out_proj.weight, v_nodes,
                                    dim, dim, 1, (1, 1), allow_flatten=False)
        self._place_on_nodes(out_proj.bias, out, SLOT_BIAS)
        return _Layout(out, depth), OPAQUE

    def _norm(self, prefix: str, module: nn.Module, x: Any) -> Any:
        scale, shift = getattr(module, "weight", None), getattr(module, "bias", None)
        if scale is None and shift is None:
            return x
        count = (scale if scale is not None else shift).numel()
        if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
            self.notes.append(f"{prefix}: LayerNorm over {tuple(module.normalized_shape)} is not per neuron")
            return x
        if isinstance(x, _Layout) and x.nodes is None:
            nodes, _, _ = self._neurons(x, count, prefix, allow_flatten=False)
            x = replace(x, nodes=nodes, source=None)
        if not isinstance(x, _Layout) or x.nodes.numel() != count:
            self.notes.append(f"{prefix}: {type(module).__name__} of {count} channels does not match its input")
            return x
        self._place_on_nodes(scale, x.nodes, SLOT_NORM_WEIGHT)
        self._place_on_nodes(shift, x.nodes, SLOT_NORM_BIAS)
        return x

    # ---------------------------------------------------------------- parameter-free ops
    def _activate(self, x: Any, name: str) -> Any:
        if isinstance(x, _Layout) and x.nodes is not None:
            self.builder.set_activation(x.nodes, ACTIVATIONS[name])
        return x

    def _flatten(self, x: Any) -> Any:
        if not isinstance(x, _Layout) or x.spatial is None:
            return x
        if isinstance(x.spatial, tuple) and math.prod(x.spatial) == 1:
            return _Layout(x.nodes, x.depth, source=x.source)
        return _Layout(x.nodes, x.depth, flat_from=x.spatial, source=x.source)

    @staticmethod
    def _resize(x: Any, spatial: Union[str, Tuple[int, ...]]) -> Any:
        if not isinstance(x, _Layout) or x.nodes is None:
            return x
        return replace(x, spatial=spatial, flat_from=None)

    def _merge(self, a: Any, b: Any) -> Any:
        """``a + b``: identity edges from the shallower operand into the deeper one."""
        if not isinstance(a, _Layout) or not isinstance(b, _Layout):
            # A scalar (or a constant) operand keeps the other operand's channels.
            if isinstance(a, _Layout) and not isinstance(b, _Opaque):
                return a
            if isinstance(b, _Layout) and not isinstance(a, _Opaque):
                return b
            return OPAQUE
        if a.nodes is None and b.nodes is None:
            return a if a.source is b.source else OPAQUE
        if a.nodes is None or b.nodes is None:
            known, raw = (a, b) if a.nodes is not None else (b, a)
            nodes, _, _ = self._neurons(raw, known.nodes.numel(), "residual input", allow_flatten=False)
            raw = _Layout(nodes, 0, spatial=known.spatial)
            a, b = (known, raw) if a.nodes is not None else (raw, known)
        if a.nodes.numel() != b.nodes.numel():
            self.notes.append(f"addition of {a.nodes.numel()} and {b.nodes.numel()} channels not followed")
            return OPAQUE
        target, other = (a, b) if a.depth >= b.depth else (b, a)
        if not torch.equal(target.nodes, other.nodes):
            self.builder.add_residual(other.nodes, target.nodes)
        return target

    def call_function(self, name: str, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        """Layout of a call_function / call_method node named ``name``."""
        x = args[0] if args else None
        activation = _ACTIVATION_FUNCTIONS.get(name)
        if activation is not None:
            return self._activate(x, activation)
        if name in ("size", "dim", "numel"):
            return None
        if name == "getitem":
            return x[args[1]] if isinstance(x, tuple) and isinstance(args[1], int) else OPAQUE
        if name in _ADDING:
            return self._merge(x, args[1] if len(args) > 1 else kwargs.get("other"))
        if name in _SCALING:
            other = args[1] if len(args) > 1 else None
            if isinstance(x, _Layout) and not isinstance(other, (_Layout, _Opaque)):
                return x
            if isinstance(other, _Layout) and not isinstance(x, (_Layout, _Opaque)):
                return other
            return OPAQUE
        if name in _PRESERVING:
            return self._resize(x, UNKNOWN) if name.endswith(("pool1d", "pool2d", "interpolate")) else x
        if name in ("flatten", "view", "reshape"):
            return self._flatten(x)
        if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool1d"):
            size = args[1] if len(args) > 1 else kwargs.get("output_size")
            size = (size,) * (2 if "2d" in name else 1) if isinstance(size, int) else size
            ok = isinstance(size, (tuple, list)) and all(isinstance(s, int) for s in size)
            return self._resize(x, tuple(size) if ok else UNKNOWN)
        if name in ("mean", "amax", "sum", "max", "amin"):
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else dims
            keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            if isinstance(x, _Layout) and x.spatial is not None and isinstance(dims, (tuple, list)) \
                    and not any(d in (0, 1) for d in dims):
                return self._resize(x, (1,) * len(dims)) if keep else _Layout(x.nodes, x.depth)
            return OPAQUE
        if name == "cat":
            parts = list(x) if isinstance(x, (list, tuple)) else []
            if parts and all(isinstance(t, _Layout) and t.nodes is not None for t in parts):
                spatial = {t.spatial for t in parts}
                if len(spatial) == 1:
                    return _Layout(torch.cat([t.nodes for t in parts]), max(t.depth for t in parts),
                                   spatial=spatial.pop())
            return OPAQUE
        return OPAQUE

    # ---------------------------------------------------------------- walks
    def walk_traced(self, gm: fx.GraphModule) -> Optional[Tensor]:
        env: Dict[fx.Node, Any] = {}

        def load(a: Any) -> Any:
            return fx.node.map_arg(a, lambda n: env[n])

        outputs: List[Tensor] = []
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                env[node] = _Layout(None, source=_Input(node.name))
            elif node.op == "get_attr":
                env[node] = None  # a constant or parameter: ``x * scale`` keeps x's channels
            elif node.op == "call_module":
                env[node] = self.call_module(node.target, gm.get_submodule(node.target), load(node.args))
            elif node.op in ("call_function", "call_method"):
                target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
                env[node] = self.call_function(target, load(node.args), load(node.kwargs))
            elif node.op == "output":
                outputs = [v.nodes for v in _flatten_values(load(node.args[0]))
                           if isinstance(v, _Layout) and v.nodes is not None]
            meta = node.meta.get("tensor_meta")
            value = env.get(node)
            if isinstance(value, _Layout) and value.spatial is not None and meta is not None \
                    and hasattr(meta, "shape") and len(meta.shape) >= 3:
                env[node] = replace(value, spatial=tuple(int(s) for s in meta.shape[2:]))
        return torch.cat(outputs) if outputs else None

    def walk_modules(self) -> Optional[Tensor]:
        current: Any = _Layout(None, source=_Input("input"))
        skip: Tuple[str, ...] = ()
        last: Optional[Tensor] = None
        for name, module in self.module.named_modules():
            if skip and name.startswith(skip):
                continue
            if isinstance(module, nn.MultiheadAttention):
                skip = (name + ".",)
            elif len(list(module.children())) > 0:
                if any(True for _ in module.parameters(recurse=False)):
                    self.notes.append(f"{name or 'root'}: parameters held directly by a container "
                                      f"get block graphs of their own")
                continue
            out = self.call_module(name, module, (current,))
            out = out[0] if isinstance(out, tuple) else out
            if isinstance(out, _Layout):
                current = out
                if out.nodes is not None:
                    last = out.nodes
        return last

    def place_leftovers(self) -> List[str]:
        """Block graphs for parameters the wiring did not place; returns their names."""
        leftovers = [name for name, _ in self.module.named_parameters() if name not in self.builder.placed]
        for name in leftovers:
            self.builder.add_block(name, self.module.get_parameter(name).shape)
        return leftovers


def _flatten_values(value: Any) -> List[Any]:
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _flatten_values(item)]
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flatten_values(item)]
    return [value]


def unwrap_module(module: nn.Module) -> nn.Module:
    """The module whose wiring counts: through ``torch.compile`` and (Distributed)DataParallel."""
    while True:
        if hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        elif isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        else:
            return module


def build_block_graph(named_shapes: Sequence[Tuple[str, Sequence[int]]], graph_class: type) -> NeuralGraph:
    """Implementation of :func:`~l2o_graphs.graph.neural_graph.block_graph` (see there), the
    graph made as a ``graph_class``."""
    if not named_shapes:
        raise ValueError("block_graph needs at least one tensor")
    builder = GraphBuilder(graph_class)
    for name, shape in named_shapes:
        builder.add_block(name, torch.Size(shape))
    names, shapes = zip(*[(n, tuple(s)) for n, s in named_shapes])
    return builder.finish(names, shapes, None, traced=False)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def _trace(module: nn.Module) -> Tuple[Optional[fx.GraphModule], Optional[str]]:
    """``torch.fx`` trace of ``module``, or (None, why it failed)."""
    try:
        return fx.symbolic_trace(module), None
    except Exception as err:  # tracing fails in many ways (TraceError, RuntimeError, TypeError...)
        return None, _first_line(err)


def _structure_key(module: nn.Module, gm: Optional[fx.GraphModule], example_input: Any) -> Hashable:
    """What the graph depends on: modules, parameter shapes, the traced forward code (two models
    whose forward differs only by a plain attribute, such as a residual flag, trace differently)
    and the example input's shapes."""
    modules = tuple((name, type(m), m.extra_repr()) for name, m in module.named_modules())
    params = tuple((name, tuple(p.shape)) for name, p in module.named_parameters())
    shapes = tuple(tuple(t.shape) for t in _flatten_values(example_input) if isinstance(t, Tensor))
    return modules, params, gm.code if gm is not None else None, shapes


_CACHE: "OrderedDict[Hashable, NeuralGraph]" = OrderedDict()
_CACHE_SIZE = 64


def clear_graph_cache() -> None:
    """Forget every topology built so far: the next :meth:`NeuralGraph.from_module` of any model
    builds (and warns) anew."""
    _CACHE.clear()


def build_neural_graph(module: nn.Module, example_input: Any, graph_class: type) -> NeuralGraph:
    """Implementation of :meth:`NeuralGraph.from_module` (see there), the graph made as a
    ``graph_class`` (the reader does not import the class: the graph package has no import cycle)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"NeuralGraph.from_module expects a torch.nn.Module, got {type(module).__name__}")
    module = unwrap_module(module)
    if not any(True for _ in module.parameters()):
        raise ValueError(f"{type(module).__name__} has no parameters: there is nothing to build a neural graph of")
    # A single layer (nn.Linear(3, 2) itself) is read as a layer: its traced forward would only
    # show a functional call.
    is_layer = not any(True for _ in module.children())
    gm, trace_error = (None, None) if is_layer else _trace(module)
    key = _structure_key(module, gm, example_input)
    try:
        cached = _CACHE.get(key)
    except TypeError:  # an unhashable extra_repr part; build without caching
        key, cached = None, None
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached

    graph = _build(module, gm, trace_error, example_input, graph_class)
    if key is not None:
        _CACHE[key] = graph
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return graph


def _build(module: nn.Module, gm: Optional[fx.GraphModule], trace_error: Optional[str],
           example_input: Any, graph_class: type) -> NeuralGraph:
    if trace_error is not None:
        warnings.warn(
            f"torch.fx could not trace {type(module).__name__} ({trace_error}); reading its layers "
            f"in module registration order instead: residual connections and branches are not seen.",
            NeuralGraphWarning, stacklevel=4)
    if gm is not None and example_input is not None:
        from torch.fx.passes.shape_prop import ShapeProp

        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(*inputs)
        except Exception as err:
            raise ValueError(f"example_input does not run through {type(module).__name__}: "
                             f"{_first_line(err)}") from err

    reader = _Reader(module, traced=gm is not None, graph_class=graph_class)
    outputs = reader.walk_traced(gm) if gm is not None else reader.walk_modules()
    leftovers = reader.place_leftovers()
    if leftovers or reader.notes:
        parts = []
        if leftovers:
            parts.append(f"{len(leftovers)} parameter(s) could not be placed in the wiring and got block "
                         f"graphs of their own: {', '.join(leftovers)}")
        parts.extend(reader.notes)
        warnings.warn(f"neural graph of {type(module).__name__}: " + "; ".join(parts),
                      NeuralGraphWarning, stacklevel=4)
    names, shapes = zip(*[(n, tuple(p.shape)) for n, p in module.named_parameters()])
    return reader.builder.finish(names, shapes, outputs, traced=gm is not None)

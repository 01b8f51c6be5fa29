"""The neural graph of a network: a static topology plus exact maps between parameters and graph tensors.

A :class:`NeuralGraph` holds only structure (which node or edge stores which parameter element);
values are brought in and out with :meth:`NeuralGraph.gather` and :meth:`NeuralGraph.scatter`.

Layout of the graph tensors, for a dict of tensors shaped ``param.shape + F`` (``F`` a common
trailing feature shape, often empty):

* ``node_x``: ``[N, S, *F]``. Node ``n`` has ``S`` slots; slot ``s`` holds one 1-D parameter
  placed on that node (a bias, a norm scale or shift, ...). ``node_slot_kind[n, s]`` names it.
* ``edge_x``: ``[E, K, *F]`` with ``K = KH * KW`` (``kernel_shape``). A linear weight sits at the
  kernel centre; a conv kernel ``kh x kw`` is centred in ``KH x KW`` (offset ``(KH - kh) // 2``);
  ``edge_mask`` tells which positions hold parameter values.

Entries that hold no parameter are zero after ``gather`` and ignored by ``scatter``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from l2o_graphs.graph.layout import (
    ACTIVATION_NAMES, EDGE_KINDS, EDGE_RESIDUAL, EDGE_WEIGHT, NODE_ROLES, SLOT_EMPTY, EdgePlacement, EdgeSegment,
    NodeIndex, NodePlacement, materialise_index, materialise_kinds)
from l2o_graphs.graph.wiring import build_block_graph, build_neural_graph


def _tensor_bytes(obj: object, seen: set) -> int:
    """Bytes of the distinct tensors reachable from ``obj`` through dicts, sequences and
    dataclasses (each storage counted once)."""
    if isinstance(obj, Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_tensor_bytes(getattr(obj, f), seen) for f in obj.__dataclass_fields__)
    return 0


@dataclass(frozen=True, eq=False)
class NeuralGraph:
    """Static neural graph of a network. Build it with :meth:`from_module`.

    Attributes (``N`` nodes, ``E`` edges, ``S`` node slots, ``K = KH * KW`` kernel positions):
        edge_segments: the edges as contiguous runs (:class:`EdgeSegment`), in order, covering
            ``0..E``: a layer's dense block costs four numbers, not an index pair per weight.
            ``edge_index`` (``[2, E]`` long, row 0 the source, row 1 the target) and ``edge_kind``
            (``[E]`` long, see ``EDGE_KINDS``; residual edges carry no parameter) are materialised
            from them on every access, for export and tests: O(E) memory the graph does not keep.
        node_layer: ``[N]`` long, depth of the node (0 for input neurons).
        node_role: ``[N]`` long, see ``NODE_ROLES``.
        node_index: ``[N]`` long, index of the neuron among the non-permutable nodes of its group
            (input neurons, output neurons, fixed nodes); -1 for permutable hidden neurons.
        node_pos: ``[N]`` long, positional id: one per hidden layer, one per input, output and
            fixed neuron. Nodes sharing an id are treated as interchangeable; the network's true
            symmetry can be smaller (a GroupNorm of several groups only permutes channels within
            a group, and the groups among themselves).
        node_activation: ``[N]`` long, activation applied to the node's value (``ACTIVATIONS``).
        node_slot_kind: ``[N, S]`` long, see ``SLOT_KINDS``.
        kernel_shape: ``(KH, KW)``.
        param_names / param_shapes: the parameters, in ``named_parameters`` order.
        traced: whether the wiring came from ``torch.fx`` (False: module-order fallback).
    """

    edge_segments: Tuple[EdgeSegment, ...]
    node_layer: Tensor
    node_role: Tensor
    node_index: Tensor
    node_pos: Tensor
    node_activation: Tensor
    node_slot_kind: Tensor
    kernel_shape: Tuple[int, int]
    edge_places: Tuple[EdgePlacement, ...]
    node_places: Tuple[NodePlacement, ...]
    param_names: Tuple[str, ...]
    param_shapes: Tuple[Tuple[int, ...], ...]
    traced: bool = True

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_module(cls, module: torch.nn.Module, example_input: object = None) -> "NeuralGraph":
        """Read the wiring of ``module`` and return its neural graph (cached by structure).

        Args:
            module: the network. ``torch.compile`` and (Distributed)DataParallel wrappers are
                read through to the module they wrap.
            example_input: optional input (a tensor or a tuple of tensors). When given, shapes
                are propagated through the traced graph, which fixes the spatial size of a
                feature map flattened into a linear layer; otherwise that size is inferred from
                the layer's ``in_features``.
        """
        return build_neural_graph(module, example_input, cls)

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        return int(self.node_layer.numel())

    @property
    def num_edges(self) -> int:
        return self.edge_segments[-1].stop if self.edge_segments else 0

    @property
    def device(self) -> torch.device:
        """Where the graph's index tensors live."""
        return self.node_layer.device

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` long (source, target) of every edge, materialised now (see the class doc)."""
        return materialise_index(self.edge_segments, self.device)

    @property
    def edge_kind(self) -> Tensor:
        """``[E]`` long kind of every edge, materialised now."""
        return materialise_kinds(self.edge_segments, self.device)

    @property
    def num_slots(self) -> int:
        return int(self.node_slot_kind.shape[1])

    @property
    def kernel_size(self) -> int:
        """``K = KH * KW``, the width of ``edge_x``."""
        return self.kernel_shape[0] * self.kernel_shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor the graph holds now (its fields, node placements and the derived
        quantities computed so far): the topology's memory."""
        return _tensor_bytes(vars(self), set())

    @property
    def num_params(self) -> int:
        """Number of scalar parameters the graph stores."""
        total = 0
        for shape in self.param_shapes:
            total += int(torch.Size(shape).numel())
        return total

    @cached_property
    def node_mask(self) -> Tensor:
        """``[N, S]`` bool: slots that hold a parameter."""
        return self.node_slot_kind != SLOT_EMPTY

    @cached_property
    def edge_mask(self) -> Tensor:
        """``[E, K]`` bool: kernel positions that hold a parameter."""
        kh_max, kw_max = self.kernel_shape
        mask = torch.zeros(self.num_edges, kh_max, kw_max, dtype=torch.bool, device=self.device)
        for place in self.edge_places:
            r0, c0 = self._kernel_offset(place.kernel)
            mask[place.start:place.start + place.rows, r0:r0 + place.kernel[0], c0:c0 + place.kernel[1]] = True
        return mask.view(self.num_edges, self.kernel_size)

    @cached_property
    def non_weight_edges(self) -> Tensor:
        """Ids of the edges that are not plain weight edges (residual or unplaced blocks)."""
        ids = [torch.arange(seg.start, seg.stop) for seg in self.edge_segments if seg.kind != EDGE_WEIGHT]
        return (torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)).to(self.device)

    @cached_property
    def non_weight_kinds(self) -> Tensor:
        """The ``EDGE_KINDS`` of :attr:`non_weight_edges`, in the same order."""
        return materialise_kinds([seg for seg in self.edge_segments if seg.kind != EDGE_WEIGHT], self.device)

    @cached_property
    def edges_fully_covered(self) -> bool:
        """Whether parameters fill every position of ``edge_x`` (no padding, no residual edges)."""
        return bool(self.edge_mask.all())

    @cached_property
    def has_parameterless_edges(self) -> bool:
        """Whether some edge holds no parameter at all (residual edges)."""
        return any(seg.kind == EDGE_RESIDUAL and seg.num_edges for seg in self.edge_segments)

    @cached_property
    def degrees(self) -> Tuple[Tensor, Tensor]:
        """``([N], [N])`` float: in-degree and out-degree of every node."""
        deg_in = torch.zeros(self.num_nodes, device=self.device)
        deg_out = torch.zeros(self.num_nodes, device=self.device)
        for seg in self.edge_segments:
            if seg.dense is not None:
                rows, cols, s0, d0 = seg.dense
                deg_in[d0:d0 + rows] += cols
                deg_out[s0:s0 + cols] += rows
            else:
                deg_in += torch.bincount(seg.index[1], minlength=self.num_nodes)
                deg_out += torch.bincount(seg.index[0], minlength=self.num_nodes)
        return deg_in, deg_out

    def precompute(self) -> "NeuralGraph":
        """Evaluate every cached derived quantity now (they need host syncs; a compiled update
        network then reads them without graph breaks). Returns ``self``."""
        for name in ("node_mask", "edge_mask", "non_weight_edges", "non_weight_kinds", "edges_fully_covered",
                     "has_parameterless_edges", "degrees", "_place_by_name", "layer_owner"):
            getattr(self, name)
        return self

    def structural_edge_x(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[E, K]``: the identity kernel (1 at the centre) on residual edges, 0 elsewhere.

        Residual additions have no parameter behind them; this is the constant they carry."""
        out = torch.zeros(self.num_edges, *self.kernel_shape, dtype=dtype, device=self.device)
        for seg in self.edge_segments:
            if seg.kind == EDGE_RESIDUAL:
                out[seg.start:seg.stop, (self.kernel_shape[0] - 1) // 2, (self.kernel_shape[1] - 1) // 2] = 1
        return out.view(self.num_edges, self.kernel_size)

    # ------------------------------------------------------------------ gather / scatter
    def _kernel_offset(self, kernel: Tuple[int, int]) -> Tuple[int, int]:
        return (self.kernel_shape[0] - kernel[0]) // 2, (self.kernel_shape[1] - kernel[1]) // 2

    def _feature_shape(self, tensors: Mapping[str, Tensor]) -> Tuple[torch.Size, Tensor]:
        missing = [n for n in self.param_names if n not in tensors]
        extra = [n for n in tensors if n not in set(self.param_names)]
        if missing or extra:
            raise KeyError(
                f"gather needs exactly the graph's parameter names; missing {missing[:5]}, "
                f"unexpected {extra[:5]} (graph has {len(self.param_names)} parameters)")
        first = tensors[self.param_names[0]]
        feat = first.shape[len(self.param_shapes[0]):]
        for name, shape in zip(self.param_names, self.param_shapes):
            t = tensors[name]
            if tuple(t.shape[:len(shape)]) != shape or t.shape[len(shape):] != feat:
                raise ValueError(
                    f"tensor {name!r} has shape {tuple(t.shape)}; expected {shape} + a trailing "
                    f"feature shape shared by all tensors ({tuple(feat)} from {self.param_names[0]!r})")
        return feat, first

    def param_view(self, node_x: Tensor, edge_x: Tensor, name: str) -> Tuple[Optional[Tensor], Tuple[int, ...]]:
        """Where parameter ``name`` lives in ``node_x [N, S, *F]`` / ``edge_x [E, K, *F]``.

        Returns ``(view, block_shape)``: ``view`` is a view of the graph tensor shaped
        ``[*block_shape, *F]`` (``(rows, kh, kw)`` for edges, ``(n,)`` for nodes) to which the
        parameter reshapes (a view for contiguous parameters). ``view`` is None for
        a node parameter on a non-contiguous node set (write it with :meth:`gather_into`). Take
        the view right before writing through it (autograd tracks views by creation time)."""
        place = self._place_by_name[name]
        feat = node_x.shape[2:]
        if isinstance(place, EdgePlacement):
            r0, c0 = self._kernel_offset(place.kernel)
            kh, kw = place.kernel
            edges = edge_x.view(self.num_edges, *self.kernel_shape, *feat)
            return edges[place.start:place.start + place.rows, r0:r0 + kh, c0:c0 + kw], (place.rows, kh, kw)
        block = (int(torch.Size(place.shape).numel()),)
        return (node_x[place.nodes, place.slot] if isinstance(place.nodes, slice) else None), block

    @cached_property
    def layer_owner(self) -> Dict[str, str]:
        """``{parameter name: name of its layer's weight}``: a parameter stored on nodes (a bias,
        a normalisation scale or shift) belongs to the first weight, in parameter order, whose
        edges end on its first node (the weight feeding those neurons); a weight, and a node
        parameter that no weight feeds (a normalisation of the inputs), is its own owner."""
        position = {name: i for i, name in enumerate(self.param_names)}
        weights = sorted(self.edge_places, key=lambda p: position[p.name])
        feeder = torch.full((self.num_nodes,), -1, dtype=torch.long)
        segment_at = {seg.start: seg for seg in self.edge_segments}
        for index in reversed(range(len(weights))):  # the first weight in parameter order wins
            place = weights[index]
            if place.rows:  # a weight's edges are one segment of their own
                targets = segment_at[place.start].targets()
                feeder[targets if isinstance(targets, slice) else targets.cpu()] = index
        owner = {p.name: p.name for p in weights}
        for place in self.node_places:
            if not torch.Size(place.shape).numel():
                owner[place.name] = place.name
                continue
            first = place.nodes.start if isinstance(place.nodes, slice) else int(place.nodes[0])
            index = int(feeder[first])
            owner[place.name] = weights[index].name if index >= 0 else place.name
        return owner

    @cached_property
    def _place_by_name(self) -> Dict[str, Union[EdgePlacement, NodePlacement]]:
        return {p.name: p for p in self.edge_places + self.node_places}

    def gather_into(self, tensors: Mapping[str, Tensor], node_x: Tensor, edge_x: Tensor,
                    names: Optional[Sequence[str]] = None) -> None:
        """Write ``tensors`` (all parameters, or only ``names``) into preallocated
        ``node_x [N, S, *F]`` and ``edge_x [E, K, *F]``, in place.

        Only entries that hold parameters are written (zero the buffers first if needed)."""
        feat = node_x.shape[2:]
        for name in (self.param_names if names is None else names):
            view, block = self.param_view(node_x, edge_x, name)
            if view is not None:
                view.copy_(tensors[name].reshape(*block, *feat))
            else:
                place = self._place_by_name[name]
                node_x[place.nodes, place.slot] = tensors[name].reshape(-1, *feat).to(node_x.dtype)

    def gather(self, tensors: Mapping[str, Tensor]) -> Tuple[Tensor, Tensor]:
        """Map a dict shaped like ``dict(module.named_parameters())`` onto the graph.

        Args:
            tensors: ``{name: tensor}`` with every parameter name of the graph; each tensor has
                the parameter's shape followed by a trailing feature shape ``F`` common to all
                (empty for plain parameters or gradients).
        Returns:
            ``node_x [N, S, *F]`` and ``edge_x [E, K, *F]``, zero where no parameter sits.
        """
        feat, first = self._feature_shape(tensors)
        node_x = first.new_zeros(self.num_nodes, self.num_slots, *feat)
        edge_x = first.new_zeros(self.num_edges, self.kernel_size, *feat)
        self.gather_into(tensors, node_x, edge_x)
        return node_x, edge_x

    def scatter(self, node_x: Tensor, edge_x: Tensor) -> Dict[str, Tensor]:
        """Inverse of :meth:`gather`: ``{name: tensor shaped param.shape + F}``.

        The returned tensors are views of ``node_x``/``edge_x`` where the layout allows (like
        ``Tensor.reshape``); copy them before writing into the graph tensors again."""
        feat = node_x.shape[2:]
        if node_x.shape[:2] != (self.num_nodes, self.num_slots):
            raise ValueError(f"node_x has shape {tuple(node_x.shape)}; expected "
                             f"({self.num_nodes}, {self.num_slots}, *F)")
        if edge_x.shape != (self.num_edges, self.kernel_size, *feat):
            raise ValueError(f"edge_x has shape {tuple(edge_x.shape)}; expected "
                             f"({self.num_edges}, {self.kernel_size}, *{tuple(feat)})")
        edges = edge_x.view(self.num_edges, *self.kernel_shape, *feat)
        out: Dict[str, Tensor] = {}
        for place in self.edge_places:
            r0, c0 = self._kernel_offset(place.kernel)
            kh, kw = place.kernel
            block = edges[place.start:place.start + place.rows, r0:r0 + kh, c0:c0 + kw]
            out[place.name] = block.reshape(place.shape + tuple(feat))
        for place in self.node_places:
            out[place.name] = node_x[place.nodes, place.slot].reshape(place.shape + tuple(feat))
        return {name: out[name] for name in self.param_names}

    # ------------------------------------------------------------------ variants
    def with_layout(self, kernel_shape: Tuple[int, int], num_slots: int) -> "NeuralGraph":
        """The same graph with a larger kernel frame and/or more node slots (for batching)."""
        if kernel_shape[0] < self.kernel_shape[0] or kernel_shape[1] < self.kernel_shape[1]:
            raise ValueError(f"kernel_shape {kernel_shape} is smaller than {self.kernel_shape}")
        if num_slots < self.num_slots:
            raise ValueError(f"num_slots {num_slots} is smaller than {self.num_slots}")
        pad = num_slots - self.num_slots
        kinds = torch.nn.functional.pad(self.node_slot_kind, (0, pad), value=SLOT_EMPTY)
        return replace(self, kernel_shape=tuple(kernel_shape), node_slot_kind=kinds)

    def to(self, device: Union[str, torch.device]) -> "NeuralGraph":
        """A copy whose index tensors live on ``device``."""
        def move(x: NodeIndex) -> NodeIndex:
            return x.to(device) if isinstance(x, Tensor) else x

        places = tuple(replace(p, nodes=move(p.nodes)) for p in self.node_places)
        return replace(
            self, edge_segments=tuple(seg.to(device) for seg in self.edge_segments),
            node_layer=self.node_layer.to(device), node_role=self.node_role.to(device),
            node_index=self.node_index.to(device), node_pos=self.node_pos.to(device),
            node_activation=self.node_activation.to(device),
            node_slot_kind=self.node_slot_kind.to(device), node_places=places)

    def to_pyg(self, node_x: Tensor, edge_x: Tensor):
        """A ``torch_geometric.data.Data`` with ``x = node_x``, ``edge_attr = edge_x`` and the
        structural attributes (``edge_kind``, ``node_layer``, ``node_role``, ``node_pos``)."""
        from torch_geometric.data import Data

        return Data(x=node_x, edge_index=self.edge_index, edge_attr=edge_x, edge_kind=self.edge_kind,
                    node_layer=self.node_layer, node_role=self.node_role, node_pos=self.node_pos,
                    num_nodes=self.num_nodes)

    # ------------------------------------------------------------------ display
    def summary(self) -> str:
        """A human-readable table of layers: nodes, edges and parameters per depth."""
        lines = [repr(self), f"{'layer':>5} {'nodes':>8} {'roles':<16} {'activation':<12} {'in-edges':>9}"]
        in_edges = torch.zeros(int(self.node_layer.max()) + 1).index_add_(0, self.node_layer.cpu(), self.degrees[0].cpu())
        for layer in range(int(self.node_layer.max()) + 1):
            sel = self.node_layer == layer
            if not bool(sel.any()):
                continue
            roles = ",".join(NODE_ROLES[r] for r in torch.unique(self.node_role[sel]).tolist())
            acts = ",".join(ACTIVATION_NAMES[a] for a in torch.unique(self.node_activation[sel]).tolist())
            lines.append(f"{layer:>5} {int(sel.sum()):>8} {roles:<16} {acts:<12} {int(in_edges[layer]):>9}")
        kinds = [sum(seg.num_edges for seg in self.edge_segments if seg.kind == k) for k in range(len(EDGE_KINDS))]
        lines.append("edges by kind: " + ", ".join(f"{k}={n}" for k, n in zip(EDGE_KINDS, kinds)))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"NeuralGraph(nodes={self.num_nodes}, edges={self.num_edges}, params={self.num_params}, "
                f"kernel={self.kernel_shape[0]}x{self.kernel_shape[1]}, slots={self.num_slots}, "
                f"traced={self.traced})")


class GraphBatch:
    """Several neural graphs as one disjoint graph, with exact un-batching.

    All graphs are brought to a common kernel frame and slot count, so ``gather`` of a list of
    dicts gives ``node_x [sum N, S, *F]`` and ``edge_x [sum E, K, *F]``; node ids of graph ``i``
    are offset by ``node_ptr[i]``.

    Attributes:
        graphs: the member graphs, re-laid out to the common frame.
        edge_segments: the members' edge segments with offsets applied (``edge_index`` and
            ``edge_kind`` materialise them, as for :class:`NeuralGraph`).
        batch: ``[sum N]`` long, graph id of every node. ``edge_batch``: ``[sum E]``.
        node_ptr / edge_ptr: ``[B + 1]`` long, cumulative node and edge counts.
    """

    def __init__(self, graphs: Sequence[NeuralGraph]):
        if len(graphs) == 0:
            raise ValueError("GraphBatch needs at least one graph")
        kernel = (max(g.kernel_shape[0] for g in graphs), max(g.kernel_shape[1] for g in graphs))
        slots = max(g.num_slots for g in graphs)
        self.graphs: List[NeuralGraph] = [g.with_layout(kernel, slots) for g in graphs]
        self.kernel_shape = kernel
        nodes = torch.tensor([g.num_nodes for g in graphs])
        edges = torch.tensor([g.num_edges for g in graphs])
        self.node_ptr = torch.cat([nodes.new_zeros(1), nodes.cumsum(0)])
        self.edge_ptr = torch.cat([edges.new_zeros(1), edges.cumsum(0)])
        self.batch = torch.repeat_interleave(torch.arange(len(graphs)), nodes)
        self.edge_batch = torch.repeat_interleave(torch.arange(len(graphs)), edges)
        self.edge_segments = tuple(seg.shifted(edge_off, node_off)
                                   for g, node_off, edge_off in zip(self.graphs, self.node_ptr.tolist(),
                                                                    self.edge_ptr.tolist())
                                   for seg in g.edge_segments)
        self.node_layer = torch.cat([g.node_layer for g in self.graphs])
        self.node_role = torch.cat([g.node_role for g in self.graphs])
        self.node_pos = torch.cat([g.node_pos for g in self.graphs])
        self.node_index = torch.cat([g.node_index for g in self.graphs])
        self.node_activation = torch.cat([g.node_activation for g in self.graphs])
        self.node_slot_kind = torch.cat([g.node_slot_kind for g in self.graphs])

    @property
    def num_graphs(self) -> int:
        return len(self.graphs)

    @cached_property
    def edge_index(self) -> Tensor:
        """``[2, sum E]`` long, node ids offset per graph (materialised on first access, then kept:
        batches serve weight-space models, which read it every forward)."""
        return materialise_index(self.edge_segments, self.node_layer.device)

    @cached_property
    def edge_kind(self) -> Tensor:
        """``[sum E]`` long (materialised on first access, then kept)."""
        return materialise_kinds(self.edge_segments, self.node_layer.device)

    @property
    def num_nodes(self) -> int:
        return int(self.node_ptr[-1])

    @property
    def num_edges(self) -> int:
        return int(self.edge_ptr[-1])

    def gather(self, tensors: Sequence[Mapping[str, Tensor]]) -> Tuple[Tensor, Tensor]:
        """One dict per graph, in order; returns batched ``node_x`` and ``edge_x``."""
        if len(tensors) != self.num_graphs:
            raise ValueError(f"got {len(tensors)} dicts for a batch of {self.num_graphs} graphs")
        feats = [g._feature_shape(t)[0] for g, t in zip(self.graphs, tensors)]
        if any(f != feats[0] for f in feats):
            raise ValueError(f"all dicts must share one trailing feature shape, got {[tuple(f) for f in feats]}")
        first = tensors[0][self.graphs[0].param_names[0]]
        slots, k = self.graphs[0].num_slots, self.graphs[0].kernel_size
        node_x = first.new_zeros(self.num_nodes, slots, *feats[0])
        edge_x = first.new_zeros(self.num_edges, k, *feats[0])
        for i, (g, t) in enumerate(zip(self.graphs, tensors)):
            g.gather_into(t, node_x[self.node_ptr[i]:self.node_ptr[i + 1]],
                          edge_x[self.edge_ptr[i]:self.edge_ptr[i + 1]])
        return node_x, edge_x

    def scatter(self, node_x: Tensor, edge_x: Tensor) -> List[Dict[str, Tensor]]:
        """Inverse of :meth:`gather`: one dict per graph."""
        return [g.scatter(n, e) for g, (n, e) in zip(self.graphs, self.unbatch(node_x, edge_x))]

    def union(self, prefixes: Optional[Sequence[str]] = None) -> NeuralGraph:
        """The batch as one :class:`NeuralGraph`: graph ``i``'s parameter ``name`` becomes
        ``f"{prefixes[i]}.{name}"`` (default prefix ``str(i)``), its nodes and edges the ranges
        ``node_ptr[i]:node_ptr[i + 1]`` and ``edge_ptr[i]:edge_ptr[i + 1]``. Anything that reads a
        neural graph (an update network, :meth:`NeuralGraph.gather`) then treats the members as
        one network with no edge between them."""
        prefixes = [str(i) for i in range(self.num_graphs)] if prefixes is None else list(prefixes)
        if len(prefixes) != self.num_graphs or len(set(prefixes)) != len(prefixes):
            raise ValueError(f"union needs {self.num_graphs} distinct prefixes, got {prefixes}")
        edge_places, node_places, names, shapes, positions = [], [], [], [], []
        position_offset = 0
        for g, prefix, nodes, edges in zip(self.graphs, prefixes, self.node_ptr.tolist(), self.edge_ptr.tolist()):
            edge_places += [replace(p, name=f"{prefix}.{p.name}", start=p.start + edges) for p in g.edge_places]
            node_places += [replace(p, name=f"{prefix}.{p.name}",
                                    nodes=(slice(p.nodes.start + nodes, p.nodes.stop + nodes)
                                           if isinstance(p.nodes, slice) else p.nodes + nodes))
                            for p in g.node_places]
            names += [f"{prefix}.{n}" for n in g.param_names]
            shapes += list(g.param_shapes)
            positions.append(g.node_pos + position_offset)  # members' positional ids stay apart
            position_offset += int(g.node_pos.max()) + 1 if g.num_nodes else 0
        return NeuralGraph(
            edge_segments=self.edge_segments, node_layer=self.node_layer,
            node_role=self.node_role, node_index=self.node_index, node_pos=torch.cat(positions),
            node_activation=self.node_activation, node_slot_kind=self.node_slot_kind,
            kernel_shape=self.kernel_shape, edge_places=tuple(edge_places), node_places=tuple(node_places),
            param_names=tuple(names), param_shapes=tuple(shapes),
            traced=all(g.traced for g in self.graphs))

    def unbatch(self, node_x: Tensor, edge_x: Tensor) -> List[Tuple[Tensor, Tensor]]:
        """Split batched graph tensors back into ``(node_x, edge_x)`` per graph."""
        node_parts = torch.split(node_x, (self.node_ptr[1:] - self.node_ptr[:-1]).tolist())
        edge_parts = torch.split(edge_x, (self.edge_ptr[1:] - self.edge_ptr[:-1]).tolist())
        return list(zip(node_parts, edge_parts))

    def __repr__(self) -> str:
        return (f"GraphBatch(graphs={self.num_graphs}, nodes={self.num_nodes}, edges={self.num_edges}, "
                f"kernel={self.kernel_shape[0]}x{self.kernel_shape[1]})")


def block_graph(named_shapes: Sequence[Tuple[str, Sequence[int]]]) -> NeuralGraph:
    """A graph in which every tensor is a block of its own (no wiring known): a 2-D (or larger)
    tensor a bipartite block, a 1-D tensor or a scalar its own nodes. Every node is ``fixed``."""
    return build_block_graph(named_shapes, NeuralGraph)

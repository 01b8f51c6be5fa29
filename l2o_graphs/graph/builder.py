"""Accumulates nodes, edges and parameter placements, then freezes them into a NeuralGraph."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, List, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor

from l2o_graphs.graph.layout import (
    EDGE_RESIDUAL, EDGE_UNPLACED, EDGE_WEIGHT, ROLE_FIXED, ROLE_HIDDEN, ROLE_INPUT, ROLE_OUTPUT,
    SLOT_EMPTY, SLOT_OTHER,
    EdgePlacement, EdgeSegment, NodeIndex, NodePlacement)

if TYPE_CHECKING:
    from l2o_graphs.graph.neural_graph import NeuralGraph


def _as_index(nodes: Tensor) -> NodeIndex:
    """A slice when ``nodes`` is a contiguous ascending run (cheap views in gather/scatter)."""
    n = nodes.numel()
    if n > 0 and torch.equal(nodes, torch.arange(int(nodes[0]), int(nodes[0]) + n)):
        return slice(int(nodes[0]), int(nodes[0]) + n)
    return nodes.clone()


class GraphBuilder:
    """Mutable accumulator used by the wiring readers; not part of the public API."""

    def __init__(self, graph_class: type) -> None:
        self.graph_class = graph_class  # what finish() makes: NeuralGraph (not imported here)
        self.num_nodes = 0
        self.num_edges = 0
        self._layers: List[Tensor] = []
        self._roles: List[Tensor] = []
        self._segments: List[EdgeSegment] = []
        self._slot_count = torch.zeros(0, dtype=torch.long)
        self._slot_kinds: List[Tuple[NodeIndex, int, int]] = []
        self._activations: List[Tuple[Tensor, int]] = []
        self.edge_places: List[EdgePlacement] = []
        self.node_places: List[NodePlacement] = []
        self.placed: Set[str] = set()
        self.max_depth = 0

    def _claim(self, name: str) -> None:
        if name in self.placed:  # the readers check first: this is a bug guard, not user input
            raise RuntimeError(f"parameter {name!r} placed twice in the neural graph")
        self.placed.add(name)

    def add_nodes(self, count: int, depth: int, role: int = ROLE_HIDDEN) -> Tensor:
        """Create ``count`` nodes at ``depth``; returns their ids ``[count]``."""
        ids = torch.arange(self.num_nodes, self.num_nodes + count)
        self.num_nodes += count
        self.max_depth = max(self.max_depth, depth)
        self._layers.append(torch.full((count,), depth, dtype=torch.long))
        self._roles.append(torch.full((count,), role, dtype=torch.long))
        self._slot_count = torch.cat([self._slot_count, torch.zeros(count, dtype=torch.long)])
        return ids

    def _add_segment(self, count: int, kind: int, dense: Optional[Tuple[int, int, int, int]] = None,
                     index: Optional[Tensor] = None) -> int:
        start = self.num_edges
        if count:  # an empty run (a zero-size weight) has no segment
            self._segments.append(EdgeSegment(start, start + count, dense, index, kind))
        self.num_edges += count
        return start

    def add_weight(self, name: str, shape: Sequence[int], src: Tensor, dst: Tensor,
                   kernel: Tuple[int, int], kind: int = EDGE_WEIGHT) -> None:
        """Place a weight whose row ``r`` (row-major over its two leading dims, kernel trailing)
        connects ``src[r] -> dst[r]``."""
        self._claim(name)
        start = self._add_segment(src.numel(), kind, index=torch.stack([src, dst]))
        self.edge_places.append(EdgePlacement(name, tuple(shape), start, src.numel(), tuple(kernel)))

    def add_dense_weight(self, name: str, shape: Sequence[int], src_nodes: Tensor, dst_nodes: Tensor,
                         kernel: Tuple[int, int], kind: int = EDGE_WEIGHT) -> None:
        """Place a weight connecting every node of ``src_nodes`` (``[cols]``) to every node of
        ``dst_nodes`` (``[rows]``): row ``o * cols + i`` is ``src_nodes[i] -> dst_nodes[o]``.
        Stored as a dense block (four numbers) when both are contiguous ascending runs."""
        rows, cols = dst_nodes.numel(), src_nodes.numel()
        src_run, dst_run = _as_index(src_nodes), _as_index(dst_nodes)
        if rows and cols and isinstance(src_run, slice) and isinstance(dst_run, slice):
            self._claim(name)
            start = self._add_segment(rows * cols, kind, dense=(rows, cols, src_run.start, dst_run.start))
            self.edge_places.append(EdgePlacement(name, tuple(shape), start, rows * cols, tuple(kernel)))
        else:
            self.add_weight(name, shape, src_nodes.repeat(rows), dst_nodes.repeat_interleave(cols), kernel, kind)

    def add_residual(self, src: Tensor, dst: Tensor) -> None:
        """Structural one-to-one edges of a residual addition (no parameter behind them)."""
        self._add_segment(src.numel(), EDGE_RESIDUAL, index=torch.stack([src, dst]))

    def add_node_param(self, name: str, shape: Sequence[int], nodes: Tensor, kind: int) -> None:
        """Place a parameter with one element per node of ``nodes`` in the nodes' next free slot."""
        self._claim(name)
        slot = int(self._slot_count[nodes].max()) if nodes.numel() else 0
        self._slot_count[nodes] = slot + 1
        index = _as_index(nodes)
        self.node_places.append(NodePlacement(name, tuple(shape), index, slot))
        self._slot_kinds.append((index, slot, kind))

    def add_block(self, name: str, shape: torch.Size) -> None:
        """Place a tensor the wiring does not explain as a block of fixed nodes of its own:
        ``[a, b, *kernel]`` a bipartite ``b -> a`` block (kernel dims on the edges, more than two
        flattened), ``[n]`` on ``n`` nodes, a scalar on one node."""
        depth = self.max_depth + 1
        if len(shape) <= 1:
            nodes = self.add_nodes(shape.numel(), depth, ROLE_FIXED)
            self.add_node_param(name, shape, nodes, SLOT_OTHER)
            return
        rows, cols, rest = shape[0], shape[1], tuple(shape[2:])
        kernel = (1, 1) if not rest else ((1, rest[0]) if len(rest) == 1 else
                                          (rest[0], rest[1]) if len(rest) == 2 else (1, math.prod(rest)))
        src_nodes = self.add_nodes(cols, depth, ROLE_FIXED)
        dst_nodes = self.add_nodes(rows, depth + 1, ROLE_FIXED)
        self.add_dense_weight(name, shape, src_nodes, dst_nodes, kernel, kind=EDGE_UNPLACED)

    def set_activation(self, nodes: Tensor, activation: int) -> None:
        self._activations.append((nodes, activation))

    def finish(self, param_names: Sequence[str], param_shapes: Sequence[Tuple[int, ...]],
               output_nodes: Optional[Tensor], traced: bool) -> NeuralGraph:
        """Freeze into a :class:`NeuralGraph`; ``output_nodes`` get the output role."""
        if self.placed != set(param_names):  # every parameter exactly once, nothing else
            raise RuntimeError(f"neural graph placements do not match the parameters: unplaced "
                               f"{sorted(set(param_names) - self.placed)[:5]}, unknown "
                               f"{sorted(self.placed - set(param_names))[:5]}")
        layer = torch.cat(self._layers)
        role = torch.cat(self._roles)
        if output_nodes is not None:
            out = output_nodes[role[output_nodes] == ROLE_HIDDEN]
            role[out] = ROLE_OUTPUT
        index = torch.full_like(role, -1)
        for r in (ROLE_INPUT, ROLE_FIXED):
            sel = role == r
            index[sel] = torch.arange(int(sel.sum()))
        if output_nodes is not None:
            out = output_nodes[role[output_nodes] == ROLE_OUTPUT]
            index[out] = torch.arange(out.numel())
        # One positional id per hidden layer, one per non-permutable node.
        key = torch.stack([role, torch.where(role == ROLE_HIDDEN, layer, 0), index], 1)
        node_pos = torch.unique(key, dim=0, return_inverse=True)[1]

        activation = torch.zeros_like(layer)
        for nodes, act in self._activations:
            activation[nodes] = act
        num_slots = max(1, int(self._slot_count.max()) if self.num_nodes else 1)
        slot_kind = torch.full((self.num_nodes, num_slots), SLOT_EMPTY, dtype=torch.long)
        for nodes, slot, kind in self._slot_kinds:
            slot_kind[nodes, slot] = kind

        kernel = (max([p.kernel[0] for p in self.edge_places] + [1]),
                  max([p.kernel[1] for p in self.edge_places] + [1]))
        return self.graph_class(
            edge_segments=tuple(self._segments), node_layer=layer, node_role=role, node_index=index, node_pos=node_pos,
            node_activation=activation, node_slot_kind=slot_kind, kernel_shape=kernel,
            edge_places=tuple(self.edge_places), node_places=tuple(self.node_places),
            param_names=tuple(param_names), param_shapes=tuple(tuple(s) for s in param_shapes),
            traced=traced)

"""The vocabulary of neural graphs: kinds of nodes, slots, edges and activations, and the small
records that place parameters on a graph (placements, edge segments). Every other module of
``l2o_graphs.graph`` builds on this one, which imports none of them."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

NodeIndex = Union[slice, Tensor]

# Kinds of node slots (``node_slot_kind``).
SLOT_EMPTY, SLOT_BIAS, SLOT_NORM_WEIGHT, SLOT_NORM_BIAS, SLOT_OTHER = range(5)
SLOT_KINDS = ("empty", "bias", "norm_weight", "norm_bias", "other")

# Kinds of edges (``edge_kind``).
EDGE_WEIGHT, EDGE_RESIDUAL, EDGE_UNPLACED = range(3)
EDGE_KINDS = ("weight", "residual", "unplaced")

# Roles of nodes (``node_role``).
ROLE_INPUT, ROLE_HIDDEN, ROLE_OUTPUT, ROLE_FIXED = range(4)
NODE_ROLES = ("input", "hidden", "output", "fixed")
"""``fixed`` nodes are hidden nodes the graph does not treat as permutable (attention projections,
blocks of parameters it could not place): each keeps its own positional id."""


# Append only: learned embeddings are indexed by position (weights saved with a shorter tuple load
# with zero embeddings for the names added since, see GraphUpdateNet).
ACTIVATION_NAMES = ("none", "relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu", "elu",
                    "softplus", "hardswish", "mish", "prelu", "softmax", "log_softmax", "identity", "sin")
ACTIVATIONS = {name: i for i, name in enumerate(ACTIVATION_NAMES)}
@dataclass(frozen=True)
class EdgePlacement:
    """A parameter stored on a contiguous run of edges: ``weight[o, i, *kernel]`` is edge
    ``start + o * in + i`` (row-major over the two leading dims), kernel position centred."""

    name: str
    shape: Tuple[int, ...]
    start: int
    rows: int
    kernel: Tuple[int, int]


@dataclass(frozen=True)
class NodePlacement:
    """A parameter stored in one slot of a set of nodes, element ``j`` on node ``nodes[j]``."""

    name: str
    shape: Tuple[int, ...]
    nodes: NodeIndex
    slot: int


@dataclass(frozen=True, eq=False)
class EdgeSegment:
    """A contiguous run of edges ``[start, stop)`` of one kind: the graph's topology.

    ``dense`` is ``(rows, cols, src_start, dst_start)`` when the run is a complete bipartite block
    between two contiguous node ranges with edge ``start + o * cols + i`` going from node
    ``src_start + i`` to node ``dst_start + o`` (every linear and ungrouped conv layer): the block
    is stored as these four numbers, not edge by edge, and graph networks use broadcasting and
    reductions over it instead of index gathers. Otherwise None, and ``index`` holds the run's
    ``[2, stop - start]`` long (source, target) pairs. ``kind``: the run's ``EDGE_KINDS`` entry."""

    start: int
    stop: int
    dense: Optional[Tuple[int, int, int, int]]
    index: Optional[Tensor] = None
    kind: int = EDGE_WEIGHT

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.index is None):
            raise ValueError("an edge segment is either dense (rows, cols, src_start, dst_start) or has an index")
        count = self.dense[0] * self.dense[1] if self.dense is not None else self.index.shape[1]
        if count != self.stop - self.start:
            raise ValueError(f"edge segment [{self.start}, {self.stop}) describes {count} edges")

    @property
    def num_edges(self) -> int:
        return self.stop - self.start

    def endpoints(self) -> Tensor:
        """``[2, stop - start]`` long (source, target) of every edge, materialised for a dense run."""
        if self.dense is None:
            return self.index
        rows, cols, s0, d0 = self.dense
        src = torch.arange(s0, s0 + cols).repeat(rows)
        return torch.stack([src, torch.arange(d0, d0 + rows).repeat_interleave(cols)])

    def targets(self) -> NodeIndex:
        """The nodes the run's edges end on: a slice for a dense run, else ``[stop - start]`` ids."""
        if self.dense is None:
            return self.index[1]
        rows, _, _, d0 = self.dense
        return slice(d0, d0 + rows)

    def shifted(self, edges: int, nodes: int) -> "EdgeSegment":
        """The run moved by ``edges`` edge ids and ``nodes`` node ids (batching)."""
        if self.dense is None:
            return replace(self, start=self.start + edges, stop=self.stop + edges, index=self.index + nodes)
        rows, cols, s0, d0 = self.dense
        return replace(self, start=self.start + edges, stop=self.stop + edges, dense=(rows, cols, s0 + nodes, d0 + nodes))

    def to(self, device: Union[str, torch.device]) -> "EdgeSegment":
        return self if self.index is None else replace(self, index=self.index.to(device))


def materialise_index(segments: Sequence[EdgeSegment], device: torch.device) -> Tensor:
    """``[2, E]`` long (source, target) of every edge of ``segments`` (in order) on ``device``."""
    parts = [seg.endpoints().to(device) for seg in segments]
    return torch.cat(parts, 1) if parts else torch.zeros(2, 0, dtype=torch.long, device=device)


def materialise_kinds(segments: Sequence[EdgeSegment], device: torch.device) -> Tensor:
    """``[E]`` long ``EDGE_KINDS`` entry of every edge of ``segments`` on ``device``."""
    kinds = torch.tensor([seg.kind for seg in segments], dtype=torch.long)
    counts = torch.tensor([seg.num_edges for seg in segments], dtype=torch.long)
    return torch.repeat_interleave(kinds, counts).to(device)

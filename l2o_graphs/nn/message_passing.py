"""Message passing over a graph stored as edge segments: the one core under the optimizer's graph
networks (:mod:`l2o_graphs.nn.graph_nets`) and the weight-space encoders
(:mod:`l2o_graphs.weightspace.encoder`).

Edge tensors are channel-first, ``[d, E]`` (one row per channel, edges in the graph's order),
and so are the node tensors that edge work reads (``[d, N]``). A dense segment (a complete
bipartite block between two node ranges: every linear and ungrouped conv layer) is viewed as
``[d, rows, cols]`` and worked on with broadcasting and reductions over its two axes; other
segments use their ``index`` for gathers and ``index_add``.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from l2o_graphs.chunks import chunk_elements, row_ranges
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.graph.layout import EdgeSegment

EdgeFn = Callable[[Tensor, Tensor, Tensor, Optional[Tensor]], Tensor]


@dataclass(frozen=True)
class SegmentedGraph:
    """A graph as the message passing of the graph networks sees it: its edge segments, node
    degrees and the chunk size of edge work, with the operations every layer runs over them
    (sums over neighbours, attention over edges, maps over edges); built once per forward and
    shared by all layers.

    Edge tensors are channel-first ``[d, E]``, and so are the node tensors handed to the edge
    work (``[d, N]``). Edge work runs segment by segment: a dense segment (a complete bipartite
    block between two node ranges) is viewed as ``[d, rows, cols]`` and uses broadcasting and
    reductions over its two axes; other segments use their ``index`` for gathers and
    ``index_add``."""

    segments: Tuple[EdgeSegment, ...]
    num_nodes: int
    inv_deg_in: Tensor  # [N, 1] 1 / max(1, in-degree)
    inv_deg_out: Tensor
    scale_in: Tensor  # [N, 1] log(1 + in-degree), PNA's amplification scaler
    scale_out: Tensor
    chunk: int  # edges per chunk of edge work (l2o_graphs.chunks)

    @classmethod
    def of(cls, graph: NeuralGraph) -> "SegmentedGraph":
        return cls._build(graph.num_nodes, graph.edge_segments, graph.degrees, graph.device)

    @classmethod
    def of_edges(cls, edge_index: Tensor, num_nodes: int) -> "SegmentedGraph":
        """Any graph (a batch of neural graphs, say): every edge in one general segment."""
        src, dst = edge_index
        degrees = (torch.bincount(dst, minlength=num_nodes).float(), torch.bincount(src, minlength=num_nodes).float())
        segments = (EdgeSegment(0, src.numel(), None, edge_index),) if src.numel() else ()
        return cls._build(num_nodes, segments, degrees, edge_index.device)

    @classmethod
    def _build(cls, n: int, segments: Tuple[EdgeSegment, ...], degrees: Tuple[Tensor, Tensor],
               device: torch.device) -> "SegmentedGraph":
        deg_in, deg_out = (d[:, None] for d in degrees)
        return cls(segments, n, 1 / deg_in.clamp(min=1), 1 / deg_out.clamp(min=1),
                   torch.log1p(deg_in), torch.log1p(deg_out), chunk_elements(device))

    def parts(self, e: Tensor) -> List[Tuple[EdgeSegment, int, int, Tensor]]:
        """``(segment, r0, r1, piece)`` covering ``e [d, E]`` in edge order: a dense segment in
        row chunks of about ``chunk`` edges, ``piece`` its rows ``[r0, r1)`` viewed as ``[d, r,
        cols]``; any other segment whole, ``piece [d, e]`` and ``r0 = r1 = 0``.

        The pieces are views cut by ``split`` (once over segments, once per dense segment over
        row chunks): under autograd the backward of each split is one concatenation, where a
        slice per piece would build a zero gradient as large as ``e`` for every piece."""
        if not self.segments:
            return []
        out = []
        for seg, piece in zip(self.segments, e.split([seg.stop - seg.start for seg in self.segments], 1)):
            if seg.dense is None:
                out.append((seg, 0, 0, piece))
                continue
            rows, cols = seg.dense[:2]
            ranges = list(row_ranges(rows, self.chunk // max(cols, 1)))
            blocks = piece.view(piece.shape[0], rows, cols).split([r1 - r0 for r0, r1 in ranges], 1)
            out.extend((seg, r0, r1, block) for (r0, r1), block in zip(ranges, blocks))
        return out

    def sums(self, e: Tensor, a_fwd: Tensor, a_bwd: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """For every node, ``[d, N]``: the sum over incoming edges of ``a_fwd[:, src] * (1 + e)``,
        the sum of incoming ``e``, and the same over outgoing edges with ``a_bwd[:, dst]``.
        ``e``: ``[d, E]``; ``a_fwd``, ``a_bwd``: ``[d, N]``."""
        d, n = e.shape[0], self.num_nodes
        fwd, fwd_e, bwd, bwd_e = (e.new_zeros(d, n) for _ in range(4))

        def add_at(total: Tensor, start: int, part: Tensor) -> None:
            # padded to all nodes, not a slice write: under autograd a slice write's backward
            # copies the whole gradient, a node-sized add costs O(N) << O(E)
            total.add_(F.pad(part, (start, n - start - part.shape[1])))

        for seg, group in itertools.groupby(self.parts(e), key=lambda part: part[0]):
            if seg.dense is None:
                index_sums(seg, next(group)[3], a_fwd, a_bwd, (fwd, fwd_e, bwd, bwd_e))
                continue
            rows, cols, s0, d0 = seg.dense
            a_in = a_fwd[:, s0:s0 + cols].unsqueeze(1)  # [d, 1, cols]
            fwd_part, fwd_e_part, bwd_part, bwd_e_part = [], [], [], []
            for _, r0, r1, block in group:  # block: [d, r, cols]
                fwd_part.append((block * a_in).sum(2))
                fwd_e_part.append(block.sum(2))
                bwd_part.append((block * a_bwd[:, d0 + r0:d0 + r1].unsqueeze(2)).sum(1))
                bwd_e_part.append(block.sum(1))
            add_at(fwd, d0, torch.cat(fwd_part, 1) + a_in.sum(2))
            add_at(fwd_e, d0, torch.cat(fwd_e_part, 1))
            add_at(bwd, s0, torch.stack(bwd_part).sum(0) + a_bwd[:, d0:d0 + rows].sum(1, keepdim=True))
            add_at(bwd_e, s0, torch.stack(bwd_e_part).sum(0))
        return fwd, fwd_e, bwd, bwd_e

    def attend(self, q: Tensor, k: Tensor, v: Tensor, edge_qkv: Tensor, heads: int, by_dst: bool) -> Tensor:
        """Softmax attention of every node over its incoming edges (``by_dst``) or its outgoing
        ones. Along edge ``j -> i`` attended by ``i``, head ``h`` scores ``(q_i + eq) . (k_j + ek)
        / sqrt(head_dim)`` over its channels and carries the value ``v_j + ev`` (``i`` and ``j``
        swap roles when not ``by_dst``).

        ``q``, ``k``, ``v``: ``[a, N]``; ``edge_qkv``: ``[3a, E]``, rows ``eq``, ``ek``, ``ev``.
        Returns ``[a, N]``; a node without such edges gets zeros. Dense segments broadcast the
        node terms over ``[a, rows, cols]`` blocks instead of gathering them per edge; the
        softmax is shifted by each node's largest score (a constant, outside autograd)."""
        a, n = q.shape[0], self.num_nodes
        head_dim = a // heads
        own_axis = 1 if by_dst else 2  # axis of the attending nodes in a dense block [., dst rows, src cols]

        def ends(seg: EdgeSegment, r0: int, r1: int):
            """The attending nodes of a part (an index, or the first node of a dense part's
            range) and functions taking a node tensor ``[a, N]`` to its values at the attending
            and at the other end of each edge (dense parts: broadcastable ``[a, r, 1]`` or
            ``[a, 1, cols]``)."""
            if seg.dense is None:
                src, dst = seg.index
                own, other = (dst, src) if by_dst else (src, dst)
                return own, functools.partial(columns, index=own), functools.partial(columns, index=other)
            _, cols, s0, d0 = seg.dense

            def at_dst(x: Tensor) -> Tensor:
                return x[:, d0 + r0:d0 + r1].unsqueeze(2)

            def at_src(x: Tensor) -> Tensor:
                return x[:, s0:s0 + cols].unsqueeze(1)

            return (d0 + r0, at_dst, at_src) if by_dst else (s0, at_src, at_dst)

        parts = []
        for seg, r0, r1, block in self.parts(edge_qkv):
            eq, ek, ev = block.chunk(3, 0)
            own, at_own, at_other = ends(seg, r0, r1)
            s = (at_own(q) + eq).mul_(at_other(k) + ek)
            scores = s.view(heads, head_dim, *s.shape[1:]).sum(1) / math.sqrt(head_dim)  # [heads, ...]
            parts.append((seg, own, at_other, ev, scores))
        with torch.no_grad():
            shift = q.new_full((heads, n), -math.inf)
            for seg, own, _, _, s in parts:
                if seg.dense is None:
                    shift.scatter_reduce_(1, own.expand(heads, -1), s, "amax")
                else:
                    best = s.amax(3 - own_axis)
                    view = shift[:, own:own + best.shape[1]]
                    torch.maximum(view, best, out=view)
            shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))

        num, den = q.new_zeros(a, n), q.new_zeros(heads, n)
        for seg, own, at_other, ev, s in parts:
            value = at_other(v) + ev
            value = value.view(heads, head_dim, *value.shape[1:])
            if seg.dense is None:
                weight = (s - columns(shift, own)).exp()  # [heads, e]
                den = den.index_add(1, own, weight)
                num = num.index_add(1, own, (weight.unsqueeze(1) * value).view(a, -1))
            else:
                count = s.shape[own_axis]
                weight = (s - shift[:, own:own + count].unsqueeze(3 - own_axis)).exp()  # [heads, r, cols]
                pad = (own, n - own - count)
                num = num + F.pad((weight.unsqueeze(1) * value).sum(4 - own_axis).view(a, count), pad)
                den = den + F.pad(weight.sum(3 - own_axis), pad)
        return (num.view(heads, head_dim, n) / (den + 1e-16).unsqueeze(1)).view(a, n)

    def edge_map(self, e: Tensor, from_src: Tensor, from_dst: Tensor, fn: EdgeFn, in_place: bool) -> Tensor:
        """``fn(e_part, from_src[:, src], from_dst[:, dst], out)`` over all edges: ``e`` is
        ``[d, E]``, ``from_src`` and ``from_dst`` are ``[d', N]``; on dense segments the three come
        as broadcastable views ``[d, r, cols]``, ``[d', 1, cols]``, ``[d', r, 1]``, in row chunks.

        ``in_place``: ``fn`` writes its result over ``e_part`` (``out`` is ``e_part``) and ``e`` is
        returned; only for results as wide as ``e`` and where no autograd graph holds ``e``.
        Otherwise ``out`` is None and the results are concatenated in edge order, ``[d'', E]``."""
        results = []
        for seg, r0, r1, piece in self.parts(e):
            out = piece if in_place else None
            if seg.dense is not None:
                _, cols, s0, d0 = seg.dense
                res = fn(piece, from_src[:, s0:s0 + cols].unsqueeze(1),
                         from_dst[:, d0 + r0:d0 + r1].unsqueeze(2), out)
                results.append(res.reshape(res.shape[0], (r1 - r0) * cols))
            else:
                src, dst = seg.index
                results.append(fn(piece, columns(from_src, src), columns(from_dst, dst), out))
        if in_place:
            return e
        if not results:  # no edges: fn of empty slices keeps the output's shape and autograd links
            return fn(e, from_src[:, :0], from_dst[:, :0], None)
        return torch.cat(results, 1) if len(results) > 1 else results[0]


def index_sums(seg: EdgeSegment, es: Tensor, a_fwd: Tensor, a_bwd: Tensor,
               totals: Tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
    """:meth:`SegmentedGraph.sums` over one segment given by its ``index``, added into ``totals`` (``fwd,
    fwd_e, bwd, bwd_e``, each ``[d, N]``) in place; ``es``: the segment's edge states ``[d, e]``."""
    fwd, fwd_e, bwd, bwd_e = totals
    src, dst = seg.index
    fwd.index_add_(1, dst, columns(a_fwd, src) * (1 + es))
    fwd_e.index_add_(1, dst, es)
    bwd.index_add_(1, src, columns(a_bwd, dst) * (1 + es))
    bwd_e.index_add_(1, src, es)


def columns(x: Tensor, index: Tensor) -> Tensor:
    """``x[:, index]`` for channel-first ``x [d, N]``, as ``index_select``: its backward is an
    ``index_add``, faster on CPUs than advanced indexing's accumulating
    ``index_put``."""
    return torch.index_select(x, 1, index)


def channels_first(x: Tensor) -> Tensor:
    """``[N, d]`` node values as a contiguous ``[d, N]`` (the layout edge work broadcasts from)."""
    return x.t().contiguous()

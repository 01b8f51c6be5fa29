"""Equivariant networks on the neural graph: NG-GNN (FiLM message passing) and NG-T (relational
attention over the existing edges).

Both share an encoder (node slots and edge kernel positions embedded element by element, plus
positional, role, activation and time embeddings) and a decoder that runs per parameter element:
the hidden state of the element's edge (or node) together with the element's own features goes
through a small MLP to a (direction, magnitude) pair. Everything is per node, per edge or a sum
over a node's neighbours, so relabelling hidden neurons relabels the outputs the same way;
normalisation is LayerNorm over each node's own features, never across nodes or graphs.
Memory is O(N + E): no dense N x N matrix.

Cost: the per-edge work runs once per parameter element. Edge tensors are therefore kept
channel-first, ``[d, E]`` (and edge features ``[F, E, K]``): a per-edge linear map is then one
``[d_out, d_in] @ [d_in, E]`` product, which CPUs run faster than ``[E, d_in] @ [d_in, d_out]``
at the small widths used here, and elementwise work streams over contiguous rows
(:mod:`l2o_graphs.nn.message_passing`). It runs in chunks whose temporaries stay small; without
autograd the edge states are updated in place; on CUDA NG-GNN's per-edge work runs in fused
kernels (:mod:`l2o_graphs.nn.edge_kernels`). The measured price against Adam is in the README
(``benchmarks/step_cost.py``).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2o_graphs.chunks import chunk_elements, row_ranges
from l2o_graphs.features import BETAS, NUM_FEATURES, NUM_TIME_FEATURES, element_features
from l2o_graphs.graph import ACTIVATION_NAMES, EDGE_KINDS, NODE_ROLES, SLOT_KINDS, NeuralGraph
from l2o_graphs.graph.layout import EDGE_WEIGHT
from l2o_graphs.nn.base import (POS_DIM, FeatureInputs, GraphFeatures, UpdateNet, feed_forward, sinusoidal,
                                structure_embedding, workspace_buffer)
from l2o_graphs.nn.message_passing import SegmentedGraph, channels_first, columns, index_sums
from l2o_graphs.types import TensorDict



@dataclass(frozen=True)
class Members:
    """A graph that holds several optimizees (:meth:`~l2o_graphs.graph.GraphBatch.union`), each
    at its own step and, optionally, decoded by output layers of its own: what the particles of
    evolution strategies differ in, so that one forward of the shared trunk serves all of them.

    ``node_ptr`` / ``edge_ptr``: ``M + 1`` offsets, member ``i`` owning the nodes
    ``node_ptr[i]:node_ptr[i + 1]`` and the edges ``edge_ptr[i]:edge_ptr[i + 1]``. ``time``:
    ``[M, T]``, each member's time features (the ``time`` argument of ``forward`` is then unused).
    ``edge_out``: ``(weight [M, 2, edge_dim], bias [M, 2])``, ``node_out``: ``(weight [M, 2,
    decoder_hidden], bias [M, 2])``, member ``i``'s output layers; None: the net's own."""

    node_ptr: Tuple[int, ...]
    edge_ptr: Tuple[int, ...]
    time: Tensor
    edge_out: Optional[Tuple[Tensor, Tensor]] = None
    node_out: Optional[Tuple[Tensor, Tensor]] = None

    def __post_init__(self) -> None:
        m = len(self.node_ptr) - 1
        sizes = [len(self.edge_ptr) - 1, self.time.shape[0]]
        sizes += [t.shape[0] for pair in (self.edge_out, self.node_out) if pair is not None for t in pair]
        if m < 1 or any(size != m for size in sizes):
            raise ValueError(f"members: every per-member field needs {m} rows, got {sizes}")

    def per_node(self, rows: Tensor) -> Tensor:
        """``rows [M, d]`` repeated over each member's nodes: ``[N, d]``."""
        counts = torch.tensor(self.node_ptr, device=rows.device).diff()
        return rows.repeat_interleave(counts, 0)

    def per_edge(self, rows: Tensor) -> Tensor:
        """``rows [M, d]`` repeated over each member's edges, channel-first: ``[d, E]``."""
        counts = torch.tensor(self.edge_ptr, device=rows.device).diff()
        return rows.t().repeat_interleave(counts, 1)


def _edge_chunks(graph: NeuralGraph, device: torch.device, start: int = 0, stop: Optional[int] = None):
    """``(a, b)`` ranges of the edges ``start..stop`` (default: all), about
    ``chunk_elements(device)`` elements each."""
    stop = graph.num_edges if stop is None else stop
    rows = chunk_elements(device) // max(graph.kernel_size, 1)
    return ((a + start, b + start) for a, b in row_ranges(stop - start, rows))


class EdgeUpdate(nn.Module):
    """``e <- e + relu(w * e + U h[src] + V h[dst] + b)``.

    The edge's own state enters through a per-channel scale ``w`` (channels mix through the
    node terms): a dense ``d x d`` matrix per edge costs more than a broadcast on CPUs, where
    this update runs once per parameter element."""

    def __init__(self, node_dim: int, edge_dim: int):
        super().__init__()
        self.own = nn.Parameter(torch.ones(edge_dim))
        self.ends = nn.Linear(node_dim, 2 * edge_dim)

    def node_terms(self, h: Tensor) -> Tuple[Tensor, Tensor]:
        """``(from_src, from_dst)``, each ``[d, N]``: the terms ``U h`` (plus the bias) and ``V h``
        every edge reads at its source and at its target; ``h``: ``[N, node_dim]``."""
        from_src, from_dst = (channels_first(x) for x in self.ends(h).chunk(2, -1))
        return from_src, from_dst

    def apply(self, es: Tensor, us: Tensor, vd: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """The update of edge states ``es [d, ...]`` given their node terms (broadcastable to
        ``es``), written to ``out`` when given."""
        t = es * self.own.view(-1, *[1] * (es.dim() - 1))  # fresh: the in-place ops are autograd-safe
        t.add_(us).add_(vd).relu_()
        return es + t if out is None else torch.add(es, t, out=out)

    def forward(self, h: Tensor, e: Tensor, w: SegmentedGraph) -> Tensor:
        """``h``: ``[N, node_dim]``, ``e``: ``[d, E]`` -> new ``[d, E]``. Without autograd ``e`` is
        updated in place and returned."""
        return w.edge_map(e, *self.node_terms(h), self.apply, in_place=not torch.is_grad_enabled())


class NGGNNLayer(nn.Module):
    """Message passing in both directions with FiLM messages, PNA-style aggregation (mean and
    degree-scaled mean), then an edge update.

    The message along edge ``j -> i`` is ``a_j * (1 + e_ji) + B e_ji``: the edge state scales
    (its own learned projection is folded into the edge update that produces it) and shifts the
    projected node state ``a``. Summing over edges then needs one pass over ``e`` per direction."""

    def __init__(self, node_dim: int, edge_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(node_dim)
        self.message = nn.Linear(node_dim, 2 * edge_dim)  # forward and reverse messages
        self.shift = nn.Linear(edge_dim, 2 * edge_dim, bias=False)
        self.node_update = feed_forward(node_dim + 4 * edge_dim, node_dim, node_dim)
        self.edge_update = EdgeUpdate(node_dim, edge_dim)

    def forward(self, h: Tensor, e: Tensor, w: SegmentedGraph) -> Tuple[Tensor, Tensor]:
        hn = self.norm(h)
        h = self.aggregate(h, hn, w.sums(e, *self.messages(hn)), w)
        return h, self.edge_update(self.norm(h), e, w)

    def messages(self, hn: Tensor) -> Tuple[Tensor, Tensor]:
        """``(a_fwd, a_bwd)``, each ``[d, N]``: the projected node states the messages carry
        forward and backward, from the normalised node states ``hn [N, node_dim]``."""
        a_fwd, a_bwd = (channels_first(a) for a in self.message(hn).chunk(2, -1))
        return a_fwd, a_bwd

    def aggregate(self, h: Tensor, hn: Tensor, sums: Tuple[Tensor, Tensor, Tensor, Tensor], w: SegmentedGraph) -> Tensor:
        """The new node states ``[N, node_dim]`` from ``h``, its normalisation ``hn`` and the
        four edge sums of :meth:`SegmentedGraph.sums` (each ``[d, N]``)."""
        fwd, fwd_e, bwd, bwd_e = (s.t() for s in sums)  # [N, d] each
        shift_f, _ = self.shift(fwd_e).chunk(2, -1)
        _, shift_b = self.shift(bwd_e).chunk(2, -1)
        agg_f = (fwd + shift_f) * w.inv_deg_in  # mean over edges from inputs towards outputs
        agg_b = (bwd + shift_b) * w.inv_deg_out  # mean over edges from outputs back to inputs
        return h + self.node_update(torch.cat([hn, agg_f, agg_f * w.scale_in, agg_b, agg_b * w.scale_out], -1))


class NGTLayer(nn.Module):
    """Relational attention: each node attends over its incoming edges (forward and reverse
    directions separately), edge features entering queries, keys and values."""

    def __init__(self, node_dim: int, edge_dim: int, heads: int = 2, attn_dim: int = 8):
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} must be divisible by heads {heads}")
        self.heads, self.attn_dim = heads, attn_dim
        self.norm = nn.LayerNorm(node_dim)
        self.node_qkv = nn.Linear(node_dim, 6 * attn_dim)  # q, k, v for two directions
        self.edge_qkv = nn.Linear(edge_dim, 6 * attn_dim, bias=False)
        self.out = nn.Linear(2 * attn_dim, node_dim)
        self.ffn_norm = nn.LayerNorm(node_dim)
        self.ffn = feed_forward(node_dim, 2 * node_dim, node_dim)
        self.edge_update = EdgeUpdate(node_dim, edge_dim)

    def forward(self, h: Tensor, e: Tensor, w: SegmentedGraph) -> Tuple[Tensor, Tensor]:
        qf, kf, vf, qb, kb, vb = (channels_first(t) for t in self.node_qkv(self.norm(h)).chunk(6, -1))
        # channel-first [6 * attn_dim, E]: the weight gradient of this product is then a plain
        # [6 * attn_dim, E] @ [E, d] with the long dimension contiguous in both operands
        edge_f, edge_b = (self.edge_qkv.weight @ e).chunk(2, 0)
        fwd = w.attend(qf, kf, vf, edge_f, self.heads, by_dst=True).t()
        bwd = w.attend(qb, kb, vb, edge_b, self.heads, by_dst=False).t()
        h = h + self.out(torch.cat([fwd, bwd], -1))
        h = h + self.ffn(self.ffn_norm(h))
        return h, self.edge_update(self.ffn_norm(h), e, w)


class GraphUpdateNet(UpdateNet):
    """Encoder, a stack of graph layers, per-element decoder (see module docstring)."""

    uses_graph = True

    def __init__(self, stack: nn.ModuleList, node_dim: int, edge_dim: int, decoder_hidden: int,
                 element_gain: float = 1.0, **config: object):
        if isinstance(element_gain, bool) or not isinstance(element_gain, (int, float)) or \
                not 0 < element_gain < float("inf"):
            raise ValueError(f"element_gain must be a positive finite number, got {element_gain!r}")
        # recorded only where it differs from 1, so that the configs of nets without it stay as they were
        gain = {} if element_gain == 1.0 else {"element_gain": float(element_gain)}
        super().__init__(node_dim=node_dim, edge_dim=edge_dim, decoder_hidden=decoder_hidden, **gain, **config)
        self.layers = stack
        f, t = NUM_FEATURES, NUM_TIME_FEATURES
        # projections of each element's features for the encoder and for the decoder; the
        # encoder's start ``element_gain`` times PyTorch's initialisation, which makes the features
        # count beside the structure embeddings (drawn from N(0, 1))
        self.node_elements = nn.Linear(f, node_dim)
        self.node_dec_x = nn.Linear(f, decoder_hidden)
        self.edge_elements = nn.Linear(f, edge_dim)
        with torch.no_grad():
            self.node_elements.weight.mul_(element_gain)
            self.edge_elements.weight.mul_(element_gain)
        self.edge_dec_x = nn.Linear(f, edge_dim)
        # encoder
        self.slot_kind = nn.Embedding(len(SLOT_KINDS), node_dim)
        self.role = nn.Embedding(len(NODE_ROLES), node_dim)
        self.activation = nn.Embedding(len(ACTIVATION_NAMES), node_dim)
        self.position = nn.Linear(2 * POS_DIM, node_dim, bias=False)
        self.node_time = nn.Linear(t, node_dim, bias=False)
        self.kernel_position = nn.Linear(2 * POS_DIM, edge_dim, bias=False)
        self.edge_kind = nn.Embedding(len(EDGE_KINDS), edge_dim)
        self.edge_time = nn.Linear(t, edge_dim, bias=False)
        # per-element decoder
        self.edge_dec_state = nn.Parameter(torch.ones(edge_dim))  # per-channel: hidden = edge_dim
        self.edge_dec_position = nn.Linear(2 * POS_DIM, edge_dim, bias=False)
        self.edge_dec_out = nn.Linear(edge_dim, 2)
        self.node_dec_state = nn.Linear(node_dim, decoder_hidden, bias=False)
        self.node_dec_kind = nn.Embedding(len(SLOT_KINDS), decoder_hidden)
        self.node_dec_out = nn.Linear(decoder_hidden, 2)
        self._init_output(self.edge_dec_out)
        self._init_output(self.node_dec_out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # ACTIVATION_NAMES only grows by appending: weights saved with a shorter vocabulary get
        # zero embeddings for the activations added since (the others keep their rows)
        key, table = prefix + "activation.weight", self.activation.weight
        saved = state_dict.get(key)
        if saved is not None and saved.dim() == 2 and saved.shape[1] == table.shape[1] and \
                saved.shape[0] < table.shape[0]:
            state_dict[key] = torch.cat([saved, saved.new_zeros(table.shape[0] - saved.shape[0], table.shape[1])])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def build_features(self, graph: Optional[NeuralGraph], inputs: Mapping[str, FeatureInputs], dtype: torch.dtype,
                       workspace: Optional[TensorDict] = None) -> GraphFeatures:
        """Every tensor's features laid out on ``graph`` (:class:`GraphFeatures`), in ``dtype``;
        see :meth:`UpdateNet.build_features`. The edge features are stored channel-first behind
        their ``[E, K, F]`` view: each feature one contiguous plane, the layout the per-edge
        matrix products (and the kernels) read without a copy. Only parameter positions are
        written: padding and residual edges stay zero."""
        if graph is None:
            raise ValueError(f"{type(self).__name__} needs the optimizee's neural graph")
        device = next(iter(inputs.values())).param.device
        node_x = workspace_buffer(workspace, "node_x", (graph.num_nodes, graph.num_slots, NUM_FEATURES), True,
                                  device, dtype)
        edge_x = workspace_buffer(workspace, "edge_x", (NUM_FEATURES, graph.num_edges, graph.kernel_size),
                                  not graph.edges_fully_covered, device, dtype).permute(1, 2, 0)
        recording = torch.is_grad_enabled()
        for name, x in inputs.items():
            view, block = graph.param_view(node_x, edge_x, name)
            values = (x.param.reshape(block), x.grad.reshape(block), x.momenta.reshape(*block, len(BETAS)),
                      x.second.reshape(block), x.step)
            if view is not None and not recording:
                element_features(*values, out=view)
            else:  # under autograd written once per tensor, not slice by slice
                graph.gather_into({name: element_features(*values)}, node_x, edge_x, names=(name,))
        return GraphFeatures(node_x, edge_x)

    @staticmethod
    def _kernel_positions(graph: NeuralGraph, device: torch.device) -> Tensor:
        """``[K, 2 * POS_DIM]``: sinusoidal (row, column) offsets from the kernel centre."""
        kh, kw = graph.kernel_shape
        rows = torch.arange(kh, device=device) - (kh - 1) // 2
        cols = torch.arange(kw, device=device) - (kw - 1) // 2
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(kh * kw, 2)
        return torch.cat([sinusoidal(grid[:, 0], POS_DIM, 100.0), sinusoidal(grid[:, 1], POS_DIM, 100.0)], -1)

    def _encode_edges(self, graph: NeuralGraph, x: Tensor, kpos: Tensor, time: Tensor,
                      members: Optional[Members] = None) -> Tensor:
        """Edge states ``[d, E]`` from edge features ``x [F, E, K]``: each element embedded,
        pooled over the kernel positions that hold parameters, plus edge-kind and time embeddings
        (each member's time with ``members``)."""
        edge_const = self.edge_kind.weight[EDGE_WEIGHT] + (self.edge_time(time) if members is None else 0)
        edge_const = edge_const.unsqueeze(-1)  # [d, 1]
        kpos_enc = self.kernel_position(kpos).t()  # [d, K]
        weight, bias = self.edge_elements.weight, self.edge_elements.bias
        num_features, num_edges, k = x.shape
        in_place = not torch.is_grad_enabled()
        e = x.new_empty(weight.shape[0], num_edges) if in_place else None
        pooled = []
        one_element = graph.kernel_size == 1 and not graph.has_parameterless_edges
        if one_element:  # one element per edge: no pooling
            first = (bias + kpos_enc[:, 0]).unsqueeze(-1)
        else:
            mask = graph.edge_mask.to(x.dtype)  # [E, K]
            count = mask.sum(1).clamp(min=1)
        for a, b in _edge_chunks(graph, x.device):
            if one_element:
                z = torch.addmm(first, weight, x[:, a:b, 0]).relu_()  # [d, c]
            else:
                z = torch.addmm(bias.unsqueeze(-1), weight, x[:, a:b].reshape(num_features, (b - a) * k))
                z = z.view(len(bias), b - a, k).add_(kpos_enc.unsqueeze(1)).relu_()  # [d, c, K]
                z = (z * mask[a:b]).sum(2).div_(count[a:b])
            pooled.append(z + edge_const if e is None else torch.add(z, edge_const, out=e[:, a:b]))
        if e is None:
            e = torch.cat(pooled, 1) if len(pooled) > 1 else pooled[0]
        other = graph.non_weight_edges  # kind embedding: corrected on the few non-weight edges
        if other.numel():
            kinds = self.edge_kind.weight
            delta = (kinds[graph.non_weight_kinds] - kinds[EDGE_WEIGHT]).t()
            e = e.index_add_(1, other, delta) if in_place else e.index_add(1, other, delta)
        if members is not None:
            member_time = members.per_edge(self.edge_time(members.time))
            e = e.add_(member_time) if in_place else e + member_time
        return e

    def _decode_edges(self, graph: NeuralGraph, x: Tensor, e: Tensor, kpos: Tensor,
                      members: Optional[Members] = None) -> Tensor:
        """``[2, E, K]``: (direction, magnitude) for every kernel position of every edge, from edge
        features ``x [F, E, K]`` and edge states ``e [d, E]`` (each member's edges through its own
        output layer when ``members`` has them)."""
        kpos_dec = self.edge_dec_position(kpos).t().unsqueeze(1)  # [d, 1, K]
        state = self.edge_dec_state.unsqueeze(-1)
        weight, bias = self.edge_dec_x.weight, self.edge_dec_x.bias.unsqueeze(-1)
        num_features, num_edges, k = x.shape
        if members is None or members.edge_out is None:
            layers = [(0, num_edges, self.edge_dec_out.weight, self.edge_dec_out.bias)]
        else:
            layers = [(members.edge_ptr[i], members.edge_ptr[i + 1], w, b)
                      for i, (w, b) in enumerate(zip(*members.edge_out))]
        out = []
        for start, stop, out_weight, out_bias in layers:
            for a, b in _edge_chunks(graph, x.device, start, stop):
                hidden = torch.addmm(bias, weight, x[:, a:b].reshape(num_features, (b - a) * k))
                hidden = hidden.view(len(bias), b - a, k).add_((e[:, a:b] * state).unsqueeze(-1)).add_(kpos_dec).relu_()
                out.append(torch.addmm(out_bias.unsqueeze(-1), out_weight, hidden.view(hidden.shape[0], -1)))
        return (torch.cat(out, 1) if len(out) > 1 else out[0]).view(2, num_edges, k)

    def _decode_nodes(self, graph: NeuralGraph, node_x: Tensor, h: Tensor,
                      members: Optional[Members] = None) -> Tensor:
        """``[N, S, 2]``: (direction, magnitude) for every slot of every node, from node features
        ``node_x [N, S, F]`` and node states ``h [N, node_dim]``."""
        hidden = self.node_dec_x(node_x).add_(self.node_dec_state(h).unsqueeze(1))
        hidden = hidden.add_(self.node_dec_kind(graph.node_slot_kind)).relu_()
        if members is None or members.node_out is None:
            return self.node_dec_out(hidden)
        ptr = members.node_ptr
        return torch.cat([F.linear(hidden[ptr[i]:ptr[i + 1]], w, b) for i, (w, b) in enumerate(zip(*members.node_out))])

    def _encode_nodes(self, graph: NeuralGraph, node_x: Tensor, time: Tensor,
                      members: Optional[Members] = None) -> Tensor:
        """Node states ``[N, node_dim]`` before the graph layers, from node features ``node_x [N, S, F]``."""
        node_mask = graph.node_mask.unsqueeze(-1).to(node_x.dtype)
        slots = (self.node_elements(node_x) + self.slot_kind(graph.node_slot_kind)).relu_() * node_mask
        node_time = self.node_time(time) if members is None else members.per_node(self.node_time(members.time))
        return slots.sum(1) + structure_embedding(graph, self.role, self.activation, self.position, node_x.dtype) \
            + node_time

    def _trunk(self, graph: NeuralGraph, node_x: Tensor, x: Tensor, kpos: Tensor,
               time: Tensor, members: Optional[Members] = None) -> Tuple[Tensor, Tensor]:
        """Node states ``[N, node_dim]`` and edge states ``[edge_dim, E]`` after the graph layers,
        from node features ``node_x [N, S, F]`` and edge features ``x [F, E, K]``."""
        h = self._encode_nodes(graph, node_x, time, members)
        e = self._encode_edges(graph, x, kpos, time, members)
        segmented = SegmentedGraph.of(graph)
        for layer in self.layers:
            h, e = layer(h, e, segmented)
        return h, e

    def embed(self, params: Mapping[str, Tensor], graph: NeuralGraph,
              standardize: Optional[Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]]] = None
              ) -> Tuple[Tensor, Tensor]:
        """The trunk's node states ``[N, node_dim]`` and edge states ``[edge_dim, E]`` for a network
        known only by its parameters ``{name: tensor}``: the features the optimizer would see
        before its first step (parameter / per-tensor RMS; gradient, moment and time features
        zero). What auxiliary weight-space tasks read (:mod:`l2o_graphs.meta.auxiliary`);
        equivariant like :meth:`forward`: relabelling hidden neurons relabels the rows.

        ``standardize``: a map of the parameters to standardised ones, such as a
        :class:`~l2o_graphs.weightspace.ParamNormalizer` fitted per tensor on a set of networks of
        one architecture; the parameter feature is then its value instead of ``p`` over its own
        RMS, which keeps how large a network's tensor is against the others' (its own RMS scales
        that away)."""
        standardized = standardize(params) if standardize is not None else None
        features = {}
        for name, p in params.items():
            features[name] = element_features(p, torch.zeros_like(p), p.new_zeros(*p.shape, len(BETAS)),
                                              torch.zeros_like(p), step=1)
            if standardized is not None:
                features[name] = torch.cat([standardized[name].unsqueeze(-1).to(features[name].dtype),
                                            features[name][..., 1:]], -1)
        node_x, edge_x = graph.gather(features)
        x = edge_x.permute(2, 0, 1).contiguous()
        kpos = self._kernel_positions(graph, x.device).to(x.dtype)
        return self._trunk(graph, node_x, x, kpos, node_x.new_zeros(NUM_TIME_FEATURES))

    def forward(self, features: Union[Mapping[str, Tensor], GraphFeatures], time: Tensor,
                graph: Optional[NeuralGraph], net_state: Mapping[str, Tensor],
                members: Optional[Members] = None, kernels: str = "torch") -> Tuple[TensorDict, TensorDict]:
        """See :class:`~l2o_graphs.nn.base.UpdateNet`; ``members``: ``graph`` holds several
        optimizees with their own times and output layers (:class:`Members`); ``kernels``: see
        :meth:`~l2o_graphs.nn.base.UpdateNet.resolve_kernels` (not with ``members``)."""
        if graph is None:
            raise ValueError(f"{type(self).__name__} needs the optimizee's neural graph")
        # [N, S, F], [E, K, F]
        node_x, edge_x = features if isinstance(features, GraphFeatures) else graph.gather(features)
        x = edge_x.permute(2, 0, 1).contiguous()  # [F, E, K]: no copy when allocated channel-first
        kpos = self._kernel_positions(graph, x.device).to(x.dtype)
        h, decoded = self._edge_work(graph, node_x, x, kpos, time, members, kernels)
        node_out = self._decode_nodes(graph, node_x, h, members)
        return graph.scatter(node_out, decoded.permute(1, 2, 0)), dict(net_state)

    def _edge_work(self, graph: NeuralGraph, node_x: Tensor, x: Tensor, kpos: Tensor, time: Tensor,
                   members: Optional[Members], kernels: str) -> Tuple[Tensor, Tensor]:
        """Node states ``[N, node_dim]`` and decoded edges ``[2, E, K]``: the trunk and the edge
        decoder, in PyTorch (``kernels`` is checked: ``"triton"`` is refused with the reason)."""
        if members is not None and kernels == "triton":
            raise ValueError("kernels='triton' serves one optimizee at a time, not members of a union graph")
        if members is None:
            self.resolve_kernels(kernels, x.device)
        h, e = self._trunk(graph, node_x, x, kpos, time, members)
        return h, self._decode_edges(graph, x, e, kpos, members)


class NGGNN(GraphUpdateNet):
    """NG-GNN learned optimizer network. Its per-edge work also runs in fused Triton kernels
    (``kernels="triton"``, forward only: :mod:`l2o_graphs.nn.edge_kernels`)."""

    def __init__(self, node_dim: int = 32, edge_dim: int = 8, layers: int = 3, decoder_hidden: int = 8,
                 update: str = "paper", element_gain: float = 1.0):
        super().__init__(nn.ModuleList(NGGNNLayer(node_dim, edge_dim) for _ in range(layers)),
                         node_dim, edge_dim, decoder_hidden, element_gain, layers=layers, update=update)

    def feature_dtype(self, kernels: str, device: torch.device) -> torch.dtype:
        """bfloat16 for the kernels under autocast (features are clipped to +-10 or normalised
        by an RMS and read into float32): half the workspace and half the kernels' largest
        reads; the computing dtype otherwise."""
        if kernels == "triton" and torch.is_autocast_enabled(device.type):
            return torch.bfloat16
        return super().feature_dtype(kernels, device)

    def kernels_unusable(self, device: torch.device) -> Optional[str]:
        if torch.is_grad_enabled():
            return "the kernels compute the forward pass only, and autograd is on"
        width = self.edge_dec_state.shape[0]
        if width & (width - 1):
            return f"the kernels need an edge width that is a power of two, this net has {width}"
        from l2o_graphs.nn import edge_kernels  # deferred: TRITON_INTERPRET is read when it is imported

        if not edge_kernels.kernels_available(device):
            return (f"Triton cannot run on {device} (CUDA devices only; on a CPU through Triton's interpreter "
                    f"with TRITON_INTERPRET=1, for tests)")
        return None

    def _edge_work(self, graph: NeuralGraph, node_x: Tensor, x: Tensor, kpos: Tensor, time: Tensor,
                   members: Optional[Members], kernels: str) -> Tuple[Tensor, Tensor]:
        """As :meth:`GraphUpdateNet._edge_work`, with the per-edge work in Triton kernels where
        ``kernels`` resolves to them (:meth:`resolve_kernels`; one optimizee, no ``members``)."""
        if members is not None or self.resolve_kernels(kernels, x.device) != "triton":
            return super()._edge_work(graph, node_x, x, kpos, time, members, kernels)
        if x.dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"kernels='triton' reads float32 or bfloat16 features, not {x.dtype}")
        return self._forward_kernels(graph, node_x, x, kpos, time)

    def _forward_kernels(self, graph: NeuralGraph, node_x: Tensor, x: Tensor, kpos: Tensor,
                         time: Tensor) -> Tuple[Tensor, Tensor]:
        """As :meth:`_trunk` and :meth:`_decode_edges` with the edge states in one buffer updated in
        place: one pass per layer serves the edge update of the layer and the messages of the
        next; edge states are stored in bfloat16 under autocast, float32 otherwise."""
        from l2o_graphs.nn import edge_kernels

        h = self._encode_nodes(graph, node_x, time)
        store = torch.bfloat16 if torch.is_autocast_enabled(x.device.type) else torch.float32
        one_element = graph.kernel_size == 1 and not graph.has_parameterless_edges
        const = self.edge_kind.weight[EDGE_WEIGHT] + self.edge_time(time)
        e = edge_kernels.encode_edges(x, None if one_element else graph.edge_mask, self.edge_elements.weight,
                                      self.edge_elements.bias, self.kernel_position(kpos).t(), const, store)
        other = graph.non_weight_edges  # kind embedding: corrected on the few non-weight edges
        if other.numel():
            kinds = self.edge_kind.weight
            e.index_add_(1, other, (kinds[graph.non_weight_kinds] - kinds[EDGE_WEIGHT]).t().to(store))
        segmented = SegmentedGraph.of(graph)
        tiles = _dense_tiles(graph)
        indexed = [seg for seg in segmented.segments if seg.dense is None]

        def edge_pass(update: Optional[EdgeUpdate], terms: Optional[Tuple[Tensor, Tensor]],
                      messages: Optional[Tuple[Tensor, Tensor]]):
            sums = edge_kernels.dense_pass(e, tiles, graph.num_nodes, None if update is None else (update.own, *terms),
                                           messages)
            for seg in indexed:  # residual edges: few, through the PyTorch path
                es = e[:, seg.start:seg.stop]
                if update is not None:
                    src, dst = seg.index
                    es.copy_(update.apply(es.float(), columns(terms[0], src), columns(terms[1], dst)))
                if messages is not None:
                    index_sums(seg, es.float(), *(m.float() for m in messages), sums)
            return sums

        layers = list(self.layers)
        if layers:
            hn = layers[0].norm(h)
            sums = edge_pass(None, None, layers[0].messages(hn))
            for i, layer in enumerate(layers):
                h = layer.aggregate(h, hn, sums, segmented)
                terms = layer.edge_update.node_terms(layer.norm(h))
                messages = None
                if i + 1 < len(layers):
                    hn = layers[i + 1].norm(h)
                    messages = layers[i + 1].messages(hn)
                sums = edge_pass(layer.edge_update, terms, messages)
        decoded = edge_kernels.decode_edges(
            x, e, self.edge_dec_x.weight, self.edge_dec_x.bias, self.edge_dec_state, self.edge_dec_position(kpos).t(),
            self.edge_dec_out.weight, self.edge_dec_out.bias)
        return h, decoded


_TILES: "weakref.WeakKeyDictionary[NeuralGraph, object]" = weakref.WeakKeyDictionary()


def _dense_tiles(graph: NeuralGraph):
    """The graph's dense segments as :class:`~l2o_graphs.nn.edge_kernels.DenseTiles`, built once
    per graph (on its device)."""
    from l2o_graphs.nn.edge_kernels import DenseTiles

    tiles = _TILES.get(graph)
    if tiles is None:
        dense = [(seg.start, *seg.dense) for seg in graph.edge_segments if seg.dense is not None]
        tiles = _TILES[graph] = DenseTiles.of(dense, graph.device)
    return tiles


class NGT(GraphUpdateNet):
    """NG-T learned optimizer network (relational transformer on the neural graph)."""

    def __init__(self, node_dim: int = 32, edge_dim: int = 8, layers: int = 2, decoder_hidden: int = 8,
                 heads: int = 2, attn_dim: int = 8, update: str = "paper", element_gain: float = 1.0):
        super().__init__(nn.ModuleList(NGTLayer(node_dim, edge_dim, heads, attn_dim) for _ in range(layers)),
                         node_dim, edge_dim, decoder_hidden, element_gain, layers=layers, heads=heads,
                         attn_dim=attn_dim, update=update)

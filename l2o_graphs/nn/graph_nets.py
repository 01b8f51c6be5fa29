"""Equivariant networks on the neural graph: NG-GNN (FiLM message passing) and NG-T (relational
attention over the existing edges).

Both share an encoder (node slots and edge kernel positions embedded element by element, plus
positional, role, activation and time embeddings) and a decoder that runs per parameter element:
the hidden state of the element's edge (or node) together with the element's own features goes
through a small MLP to a (direction, magnitude) pair. Everything is per node, per edge or a sum
over a node's neighbours, so relabelling hidden neurons relabels the outputs the same way;
normalisation is LayerNorm over each node's (edge's) own features, never across nodes or graphs.
Memory is O(N + E): no dense N x N matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.utils import softmax as segment_softmax

from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
from l2o_graphs.graph import ACTIVATION_NAMES, EDGE_KINDS, NODE_ROLES, SLOT_KINDS, NeuralGraph
from l2o_graphs.nn.base import TensorDict, UpdateNet, mlp, sinusoidal

POS_DIM = 16


@dataclass(frozen=True)
class _Wiring:
    """Per-forward graph quantities shared by all layers."""

    src: Tensor
    dst: Tensor
    num_nodes: int
    scale_in: Tensor  # [N, 1] log(1 + in-degree), PNA's amplification scaler
    scale_out: Tensor  # [N, 1] log(1 + out-degree)

    @classmethod
    def of(cls, graph: NeuralGraph) -> "_Wiring":
        src, dst = graph.edge_index
        n = graph.num_nodes
        deg_in = torch.bincount(dst, minlength=n).float()
        deg_out = torch.bincount(src, minlength=n).float()
        return cls(src, dst, n, torch.log1p(deg_in)[:, None], torch.log1p(deg_out)[:, None])

    def mean(self, values: Tensor, index: Tensor) -> Tensor:
        """Mean of edge ``values [E, d]`` over the edges sharing ``index`` (0 for none)."""
        total = values.new_zeros(self.num_nodes, values.shape[1]).index_add_(0, index, values)
        count = torch.bincount(index, minlength=self.num_nodes).clamp(min=1).to(values.dtype)
        return total / count[:, None]


class EdgeUpdate(nn.Module):
    """``e <- e + W_o relu(W_e LN(e) + U h[src] + V h[dst])``."""

    def __init__(self, node_dim: int, edge_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(edge_dim)
        self.own = nn.Linear(edge_dim, edge_dim)
        self.ends = nn.Linear(node_dim, 2 * edge_dim, bias=False)
        self.out = nn.Linear(edge_dim, edge_dim)

    def forward(self, h: Tensor, e: Tensor, w: _Wiring) -> Tensor:
        from_src, from_dst = self.ends(h).chunk(2, -1)
        return e + self.out(torch.relu(self.own(self.norm(e)) + from_src[w.src] + from_dst[w.dst]))


class NGGNNLayer(nn.Module):
    """Message passing in both directions, messages FiLM-modulated by the edge, PNA-style
    aggregation (mean and degree-scaled mean), then an edge update."""

    def __init__(self, node_dim: int, edge_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(node_dim)
        self.message = nn.Linear(node_dim, 2 * edge_dim)  # forward and reverse messages
        self.film = nn.Linear(edge_dim, 4 * edge_dim)  # scale and shift for each direction
        self.node_update = mlp(node_dim + 4 * edge_dim, node_dim, node_dim)
        self.edge_norm = nn.LayerNorm(edge_dim)
        self.edge_update = EdgeUpdate(node_dim, edge_dim)

    def forward(self, h: Tensor, e: Tensor, w: _Wiring) -> Tuple[Tensor, Tensor]:
        hn = self.norm(h)
        fwd, bwd = self.message(hn).chunk(2, -1)
        g_f, b_f, g_b, b_b = self.film(self.edge_norm(e)).chunk(4, -1)
        agg_f = w.mean(fwd[w.src] * (1 + g_f) + b_f, w.dst)  # from inputs towards outputs
        agg_b = w.mean(bwd[w.dst] * (1 + g_b) + b_b, w.src)  # from outputs back towards inputs
        h = h + self.node_update(torch.cat([hn, agg_f, agg_f * w.scale_in, agg_b, agg_b * w.scale_out], -1))
        return h, self.edge_update(h, e, w)


class NGTLayer(nn.Module):
    """Relational attention: each node attends over its incoming edges (forward and reverse
    directions separately), edge features entering queries, keys and values."""

    def __init__(self, node_dim: int, edge_dim: int, heads: int = 2, attn_dim: int = 16):
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} must be divisible by heads {heads}")
        self.heads, self.attn_dim = heads, attn_dim
        self.norm = nn.LayerNorm(node_dim)
        self.edge_norm = nn.LayerNorm(edge_dim)
        self.node_qkv = nn.Linear(node_dim, 6 * attn_dim)  # q, k, v for two directions
        self.edge_qkv = nn.Linear(edge_dim, 6 * attn_dim, bias=False)
        self.out = nn.Linear(2 * attn_dim, node_dim)
        self.ffn_norm = nn.LayerNorm(node_dim)
        self.ffn = mlp(node_dim, 2 * node_dim, node_dim)
        self.edge_update = EdgeUpdate(node_dim, edge_dim)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, index: Tensor, num_nodes: int) -> Tensor:
        head_dim = self.attn_dim // self.heads
        q, k, v = (t.view(-1, self.heads, head_dim) for t in (q, k, v))
        alpha = segment_softmax((q * k).sum(-1) / math.sqrt(head_dim), index, num_nodes=num_nodes)
        out = v.new_zeros(num_nodes, self.heads, head_dim).index_add_(0, index, alpha.unsqueeze(-1) * v)
        return out.view(num_nodes, self.attn_dim)

    def forward(self, h: Tensor, e: Tensor, w: _Wiring) -> Tuple[Tensor, Tensor]:
        qf, kf, vf, qb, kb, vb = self.node_qkv(self.norm(h)).chunk(6, -1)
        eqf, ekf, evf, eqb, ekb, evb = self.edge_qkv(self.edge_norm(e)).chunk(6, -1)
        fwd = self._attend(qf[w.dst] + eqf, kf[w.src] + ekf, vf[w.src] + evf, w.dst, w.num_nodes)
        bwd = self._attend(qb[w.src] + eqb, kb[w.dst] + ekb, vb[w.dst] + evb, w.src, w.num_nodes)
        h = h + self.out(torch.cat([fwd, bwd], -1))
        h = h + self.ffn(self.ffn_norm(h))
        return h, self.edge_update(h, e, w)


class GraphUpdateNet(UpdateNet):
    """Encoder, a stack of graph layers, per-element decoder (see module docstring)."""

    uses_graph = True

    def __init__(self, stack: nn.ModuleList, node_dim: int, edge_dim: int, decoder_hidden: int,
                 **config: object):
        super().__init__(node_dim=node_dim, edge_dim=edge_dim, decoder_hidden=decoder_hidden, **config)
        self.layers = stack
        f, t = NUM_FEATURES, NUM_TIME_FEATURES
        # encoder
        self.slot_in = nn.Linear(f, node_dim)
        self.slot_kind = nn.Embedding(len(SLOT_KINDS), node_dim)
        self.role = nn.Embedding(len(NODE_ROLES), node_dim)
        self.activation = nn.Embedding(len(ACTIVATION_NAMES), node_dim)
        self.position = nn.Linear(2 * POS_DIM, node_dim, bias=False)
        self.node_time = nn.Linear(t, node_dim, bias=False)
        self.edge_in = nn.Linear(f, edge_dim)
        self.kernel_position = nn.Linear(2 * POS_DIM, edge_dim, bias=False)
        self.edge_kind = nn.Embedding(len(EDGE_KINDS), edge_dim)
        self.edge_time = nn.Linear(t, edge_dim, bias=False)
        # per-element decoder
        self.edge_dec_x = nn.Linear(f, decoder_hidden)
        self.edge_dec_state = nn.Linear(edge_dim, decoder_hidden, bias=False)
        self.edge_dec_position = nn.Linear(2 * POS_DIM, decoder_hidden, bias=False)
        self.edge_dec_out = nn.Linear(decoder_hidden, 2)
        self.node_dec_x = nn.Linear(f, decoder_hidden)
        self.node_dec_state = nn.Linear(node_dim, decoder_hidden, bias=False)
        self.node_dec_kind = nn.Embedding(len(SLOT_KINDS), decoder_hidden)
        self.node_dec_out = nn.Linear(decoder_hidden, 2)

    @staticmethod
    def _kernel_positions(graph: NeuralGraph, device: torch.device) -> Tensor:
        """``[K, 2 * POS_DIM]``: sinusoidal (row, column) offsets from the kernel centre."""
        kh, kw = graph.kernel_shape
        rows = torch.arange(kh, device=device) - (kh - 1) // 2
        cols = torch.arange(kw, device=device) - (kw - 1) // 2
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(kh * kw, 2)
        return torch.cat([sinusoidal(grid[:, 0], POS_DIM, 100.0), sinusoidal(grid[:, 1], POS_DIM, 100.0)], -1)

    @staticmethod
    def _node_positions(graph: NeuralGraph) -> Tensor:
        """``[N, 2 * POS_DIM]``: depth and (for non-permutable nodes) index within the group;
        all hidden nodes of one layer get the same vector."""
        return torch.cat([sinusoidal(graph.node_layer, POS_DIM), sinusoidal(graph.node_index + 1, POS_DIM)], -1)

    def forward(self, features: Mapping[str, Tensor], time: Tensor, graph: Optional[NeuralGraph],
                net_state: Mapping[str, Tensor]) -> Tuple[TensorDict, TensorDict]:
        if graph is None:
            raise ValueError(f"{type(self).__name__} needs the optimizee's neural graph")
        node_x, edge_x = graph.gather(features)  # [N, S, F], [E, K, F]
        node_mask = graph.node_mask.unsqueeze(-1).to(node_x.dtype)
        edge_mask = graph.edge_mask.unsqueeze(-1).to(edge_x.dtype)
        kpos = self._kernel_positions(graph, edge_x.device)

        slots = torch.relu(self.slot_in(node_x) + self.slot_kind(graph.node_slot_kind)) * node_mask
        h = (slots.sum(1) + self.role(graph.node_role) + self.activation(graph.node_activation)
             + self.position(self._node_positions(graph)) + self.node_time(time))
        elements = torch.relu(self.edge_in(edge_x) + self.kernel_position(kpos)) * edge_mask
        e = (elements.sum(1) / edge_mask.sum(1).clamp(min=1) + self.edge_kind(graph.edge_kind)
             + self.edge_time(time))

        wiring = _Wiring.of(graph)
        for layer in self.layers:
            h, e = layer(h, e, wiring)

        edge_out = self.edge_dec_out(torch.relu(self.edge_dec_x(edge_x) + self.edge_dec_state(e).unsqueeze(1)
                                                + self.edge_dec_position(kpos)))
        node_out = self.node_dec_out(torch.relu(self.node_dec_x(node_x) + self.node_dec_state(h).unsqueeze(1)
                                                + self.node_dec_kind(graph.node_slot_kind)))
        return graph.scatter(node_out, edge_out), dict(net_state)


class NGGNN(GraphUpdateNet):
    """NG-GNN learned optimizer network."""

    def __init__(self, node_dim: int = 32, edge_dim: int = 16, layers: int = 3, decoder_hidden: int = 16):
        super().__init__(nn.ModuleList(NGGNNLayer(node_dim, edge_dim) for _ in range(layers)),
                         node_dim, edge_dim, decoder_hidden, layers=layers)


class NGT(GraphUpdateNet):
    """NG-T learned optimizer network (relational transformer on the neural graph)."""

    def __init__(self, node_dim: int = 32, edge_dim: int = 16, layers: int = 2, decoder_hidden: int = 16,
                 heads: int = 2, attn_dim: int = 16):
        super().__init__(nn.ModuleList(NGTLayer(node_dim, edge_dim, heads, attn_dim) for _ in range(layers)),
                         node_dim, edge_dim, decoder_hidden, layers=layers, heads=heads, attn_dim=attn_dim)

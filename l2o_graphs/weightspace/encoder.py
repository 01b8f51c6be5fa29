"""The equivariant graph encoder for weight-space tasks: NG-GNN or NG-T layers (the optimizer's
own, :mod:`l2o_graphs.nn.graph_nets`) over a batch of neural graphs whose features are the
networks' parameters.

A batch is a disjoint union (:class:`~l2o_graphs.graph.GraphBatch`): message passing, attention
softmaxes and LayerNorms act per node or over a node's own edges, never across graphs, and there
is no padding, so a network gets the same encoding in any batch.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from l2o_graphs.graph import ACTIVATION_NAMES, EDGE_KINDS, NODE_ROLES, GraphBatch, NeuralGraph
from l2o_graphs.nn.base import POS_DIM, structure_embedding
from l2o_graphs.nn.graph_nets import NGGNNLayer, NGTLayer
from l2o_graphs.nn.message_passing import SegmentedGraph
from l2o_graphs.nn.readout import per_graph_mean  # noqa: F401 - part of this module's API

ENCODERS = ("ng-gnn", "ng-t")
VALUE_EMBEDDINGS = ("linear", "fourier")
"""How :class:`NeuralGraphEncoder` embeds the (standardised) parameter values of nodes and edges:
``linear``, a linear map of the values; ``fourier``, a linear map of their random Fourier
features (:class:`FourierFeatures`, as the neural-graphs repository's ``sin_emb``)."""


class FourierFeatures(nn.Module):
    """Random Fourier features (Tancik et al., 2020): ``x [..., in] -> [..., 2 * features]``,
    ``[cos(2 pi x B), sin(2 pi x B)]`` with ``B [in, features]`` drawn once from ``N(0, scale^2)``
    (a buffer: saved with the module, never trained). Applied to each node's or edge's own
    values, it keeps an encoder equivariant; it lets the first linear map respond to small
    differences of a value, which a linear map of the value alone scales but cannot separate."""

    def __init__(self, in_dim: int, features: int = 128, scale: float = 3.0):
        super().__init__()
        self.register_buffer("frequencies", torch.randn(in_dim, features) * scale)

    def forward(self, x: Tensor) -> Tensor:
        angle = 2 * math.pi * (x @ self.frequencies.to(x.dtype))
        return torch.cat([angle.cos(), angle.sin()], -1)


def value_embedding(kind: str, in_dim: int, out_dim: int, features: int = 128, scale: float = 3.0) -> nn.Module:
    """The map of a node's or edge's ``in_dim`` values to ``out_dim`` (:data:`VALUE_EMBEDDINGS`)."""
    if kind not in VALUE_EMBEDDINGS:
        raise ValueError(f"unknown value embedding {kind!r}; choose one of {', '.join(VALUE_EMBEDDINGS)}")
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(FourierFeatures(in_dim, features, scale), nn.Linear(2 * features, out_dim))


class NeuralGraphEncoder(nn.Module):
    """Node and edge embeddings of every network in a batch.

    Args:
        net: ``"ng-gnn"`` or ``"ng-t"``.
        slots: node feature slots read (bias, normalisation scale and shift, ...).
        kernel_shape: the kernel frame read, ``(KH, KW)`` of the largest kernel. Every network
            is laid out in this one frame (:func:`mixed_inputs`), whatever else is in its batch:
            a frame that followed the batch's largest kernel would move a 1x1 weight from one
            input column to another and change the network's encoding.
        node_dim, edge_dim, layers: widths and depth; ``heads`` for NG-T.
        node_extra: width of extra per-node features (probe features, say) that ``forward``
            then takes as ``node_extra [sum N, node_extra]``.
        dropout: probability of zeroing node-state entries after each graph layer, in training
            mode only (the paper trains its INR classifiers with 0.2).
        values: how node and edge values are embedded (:data:`VALUE_EMBEDDINGS`);
            ``fourier_features`` and ``fourier_scale`` set the ``fourier`` one.
    """

    def __init__(self, net: str = "ng-gnn", slots: int = 1, kernel_shape: Tuple[int, int] = (1, 1),
                 node_dim: int = 64, edge_dim: int = 16, layers: int = 4, heads: int = 4, node_extra: int = 0,
                 dropout: float = 0.0, values: str = "linear", fourier_features: int = 128,
                 fourier_scale: float = 3.0):
        super().__init__()
        if net not in ENCODERS:
            raise ValueError(f"unknown encoder {net!r}; choose one of {', '.join(ENCODERS)}")
        self.net, self.slots, self.kernel_shape = net, slots, tuple(kernel_shape)
        kernel_size = self.kernel_shape[0] * self.kernel_shape[1]
        self.node_dim, self.edge_dim = node_dim, edge_dim
        self.node_in = value_embedding(values, slots, node_dim, fourier_features, fourier_scale)
        self.edge_in = value_embedding(values, kernel_size, edge_dim, fourier_features, fourier_scale)
        self.role = nn.Embedding(len(NODE_ROLES), node_dim)
        self.activation = nn.Embedding(len(ACTIVATION_NAMES), node_dim)
        self.position = nn.Linear(2 * POS_DIM, node_dim, bias=False)
        self.edge_kind = nn.Embedding(len(EDGE_KINDS), edge_dim)
        self.extra_in = nn.Linear(node_extra, node_dim) if node_extra else None
        self.dropout = nn.Dropout(dropout)
        if net == "ng-gnn":
            self.layers = nn.ModuleList(NGGNNLayer(node_dim, edge_dim) for _ in range(layers))
        else:
            self.layers = nn.ModuleList(NGTLayer(node_dim, edge_dim, heads=heads, attn_dim=node_dim // 2)
                                        for _ in range(layers))

    def forward(self, batch: GraphBatch, node_x: Tensor, edge_x: Tensor,
                node_extra: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """``node_x [sum N, slots]`` and ``edge_x [sum E, KH * KW]`` in the encoder's frame (see
        :func:`mixed_inputs`) -> node states ``[sum N, node_dim]``, edge states ``[edge_dim, sum E]``."""
        if batch.kernel_shape != self.kernel_shape or node_x.shape[1] != self.slots:
            raise ValueError(f"the encoder reads {self.slots} node slots and a {self.kernel_shape} kernel "
                             f"frame; got {node_x.shape[1]} slots and {batch.kernel_shape}: lay the graphs "
                             "out with mixed_inputs(..., kernel_shape, slots)")
        h = self.node_in(node_x) + structure_embedding(batch, self.role, self.activation, self.position, node_x.dtype)
        if (node_extra is None) != (self.extra_in is None):
            raise ValueError("node_extra must be given exactly when the encoder was built with node_extra > 0")
        if node_extra is not None:
            h = h + self.extra_in(node_extra)
        e = (self.edge_in(edge_x) + self.edge_kind(batch.edge_kind)).t().contiguous()
        segmented = SegmentedGraph.of_edges(batch.edge_index, batch.num_nodes)
        for layer in self.layers:
            h, e = layer(h, e, segmented)
            h = self.dropout(h)
        return h, e


class SameArchitecture:
    """Graph inputs for batches of parameter sets of one architecture, ``{name: [B, *shape]}``.

    Gathers all ``B`` sets in one pass (the batch as a trailing feature dimension) and keeps the
    :class:`GraphBatch` of ``B`` copies of the graph per batch size. ``kernel_shape`` and
    ``slots``: the encoder's frame (default: the graph's own)."""

    def __init__(self, graph: NeuralGraph, kernel_shape: Optional[Tuple[int, int]] = None,
                 slots: Optional[int] = None):
        self.graph = graph.with_layout(kernel_shape or graph.kernel_shape, slots or graph.num_slots)
        self._batches: Dict[int, GraphBatch] = {}

    def batch(self, size: int) -> GraphBatch:
        if size not in self._batches:
            self._batches[size] = GraphBatch([self.graph] * size)
        return self._batches[size]

    def inputs(self, params: Mapping[str, Tensor]) -> Tuple[GraphBatch, Tensor, Tensor]:
        """``(batch, node_x [B * N, S], edge_x [B * E, K])``, graph-major like ``GraphBatch.gather``."""
        size = next(iter(params.values())).shape[0]
        node_x, edge_x = self.graph.gather({n: p.movedim(0, -1) for n, p in params.items()})
        return (self.batch(size), node_x.permute(2, 0, 1).reshape(-1, node_x.shape[1]),
                edge_x.permute(2, 0, 1).reshape(-1, edge_x.shape[1]))

    def outputs(self, node_out: Tensor, edge_out: Tensor) -> Dict[str, Tensor]:
        """Inverse of :meth:`inputs` for per-node ``[B * N, S]`` and per-edge ``[B * E, K]``
        values: ``{name: [B, *shape]}``."""
        n, e = self.graph.num_nodes, self.graph.num_edges
        size = node_out.shape[0] // n
        nodes = node_out.reshape(size, n, -1).permute(1, 2, 0)
        edges = edge_out.reshape(size, e, -1).permute(1, 2, 0)
        return {name: t.movedim(-1, 0) for name, t in self.graph.scatter(nodes, edges).items()}


def mixed_inputs(graphs: Sequence[NeuralGraph], params: Sequence[Mapping[str, Tensor]],
                 kernel_shape: Tuple[int, int], slots: int) -> Tuple[GraphBatch, Tensor, Tensor]:
    """Graph inputs for networks of different architectures, one parameter dict each, laid out in
    the encoder's frame (``kernel_shape``, ``slots``): ``(batch, node_x [sum N, slots],
    edge_x [sum E, KH * KW])``."""
    batch = GraphBatch([g.with_layout(kernel_shape, slots) for g in graphs])
    node_x, edge_x = batch.gather(list(params))
    return batch, node_x, edge_x


__all__: List[str] = ["ENCODERS", "VALUE_EMBEDDINGS", "FourierFeatures", "NeuralGraphEncoder", "value_embedding",
                      "SameArchitecture", "mixed_inputs", "per_graph_mean"]

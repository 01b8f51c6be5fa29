"""Permutation-invariant readouts of node states: what weight-space heads (auxiliary tasks of the
optimizer, INR classifiers, generalization predictors) read from a graph network's trunk."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from l2o_graphs.graph import GraphBatch
from l2o_graphs.graph.layout import ROLE_OUTPUT
from l2o_graphs.nn.base import feed_forward


def per_graph_mean(x: Tensor, batch: GraphBatch, mask: Optional[Tensor] = None) -> Tensor:
    """Mean of node rows ``x [sum N, d]`` per graph (over the nodes where ``mask``), ``[B, d]``."""
    index = batch.batch.to(x.device)
    weight = torch.ones_like(index, dtype=x.dtype) if mask is None else mask.to(x.dtype)
    total = x.new_zeros(batch.num_graphs, x.shape[1]).index_add_(0, index, x * weight[:, None])
    count = x.new_zeros(batch.num_graphs).index_add_(0, index, weight)
    return total / count.clamp(min=1)[:, None]


class InvariantReadout(nn.Sequential):
    """The mean node state over a graph's output neurons and over all its nodes, concatenated
    (``[2 * node_dim]``), through :func:`~l2o_graphs.nn.base.feed_forward` to ``out_dim``.
    Invariant to permutations of hidden neurons; its parameters are the MLP's (``0.weight``, ...)."""

    def __init__(self, node_dim: int, hidden: int, out_dim: int, layers: int = 2):
        super().__init__(*feed_forward(2 * node_dim, hidden, out_dim, layers))

    def forward(self, h: Tensor, node_role: Tensor, batch: Optional[GraphBatch] = None) -> Tensor:
        """``h``: node states ``[N, node_dim]`` of one graph (``batch`` None; returns ``[out_dim]``)
        or of a batch of graphs (returns ``[B, out_dim]``); ``node_role``: ``[N]``."""
        outputs = node_role == ROLE_OUTPUT
        if batch is None:
            pooled = torch.cat([h[outputs].mean(0), h.mean(0)])
        else:
            pooled = torch.cat([per_graph_mean(h, batch, outputs), per_graph_mean(h, batch)], -1)
        return super().forward(pooled)

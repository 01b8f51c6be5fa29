"""NG-T's attention over the neural graph's edges, computed block by block on dense segments,
equals the textbook per-edge computation (gather, segment softmax, scatter-add)."""
import math

import pytest
import torch
from torch_geometric.utils import softmax as segment_softmax

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.message_passing import SegmentedGraph
from l2o_graphs.tasks import ResidualCNN, mlp
from unusual_models import Tied

MODELS = [lambda: mlp([6, 5, 3]), lambda: ResidualCNN(channels=3, blocks=2), Tied,
          lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                      torch.nn.Linear(3 * 4 * 4, 4))]


def _reference(q, k, v, edge_qkv, heads, own, other, num_nodes):
    a = q.shape[0]
    eq, ek, ev = edge_qkv.chunk(3, 0)
    qe, ke, ve = (q[:, own] + eq, k[:, other] + ek, v[:, other] + ev)
    scores = (qe * ke).view(heads, a // heads, -1).sum(1) / math.sqrt(a // heads)
    alpha = segment_softmax(scores, own, num_nodes=num_nodes, dim=1)
    out = torch.zeros(heads, a // heads, num_nodes, dtype=q.dtype)
    out.index_add_(2, own, alpha.unsqueeze(1) * ve.view(heads, a // heads, -1))
    return out.view(a, num_nodes)


@pytest.mark.parametrize("make", MODELS, ids=["mlp", "residual-cnn", "tied", "cnn-flatten"])
@pytest.mark.parametrize("by_dst", [True, False], ids=["incoming", "outgoing"])
@pytest.mark.parametrize("chunk", [None, 3], ids=["one-chunk", "row-chunks"])
def test_blockwise_attention_matches_per_edge_reference(make, by_dst, chunk):
    torch.manual_seed(0)
    graph = NeuralGraph.from_module(make())
    wiring = SegmentedGraph.of(graph)
    if chunk is not None:  # force several row chunks per dense segment
        wiring = SegmentedGraph(**{**wiring.__dict__, "chunk": chunk})
    assert any(seg.dense is not None for seg in wiring.segments)
    n, e, a, heads = graph.num_nodes, graph.num_edges, 8, 2
    q, k, v = (torch.randn(a, n, dtype=torch.float64) * 3 for _ in range(3))
    edge_qkv = torch.randn(3 * a, e, dtype=torch.float64) * 3
    src, dst = graph.edge_index
    own, other = (dst, src) if by_dst else (src, dst)
    expected = _reference(q, k, v, edge_qkv, heads, own, other, n)
    got = wiring.attend(q, k, v, edge_qkv, heads, by_dst=by_dst)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_blockwise_attention_backpropagates_like_the_reference():
    torch.manual_seed(0)
    graph = NeuralGraph.from_module(ResidualCNN(channels=3, blocks=1))
    wiring = SegmentedGraph(**{**SegmentedGraph.of(graph).__dict__, "chunk": 5})
    inputs = [torch.randn(8, graph.num_nodes, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    edge_qkv = torch.randn(24, graph.num_edges, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(8, graph.num_nodes, dtype=torch.float64)
    (wiring.attend(*inputs, edge_qkv, 2, by_dst=False) * weights).sum().backward()
    got = [t.grad.clone() for t in (*inputs, edge_qkv)]
    for t in (*inputs, edge_qkv):
        t.grad = None
    (_reference(*inputs, edge_qkv, 2, *graph.edge_index, graph.num_nodes) * weights).sum().backward()
    for g, t in zip(got, (*inputs, edge_qkv)):
        torch.testing.assert_close(g, t.grad, rtol=1e-10, atol=1e-10)

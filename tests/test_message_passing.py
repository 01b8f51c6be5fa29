"""NG-GNN's message passing over dense segments (broadcasts and reductions over blocks, in row
chunks) equals the per-edge computation written with PyTorch Geometric's ``MessagePassing`` and
``scatter``, forward and backward; and neural graphs serve stock PyG layers through ``to_pyg``."""
import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, MessagePassing
from torch_geometric.utils import scatter

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.graph_nets import EdgeUpdate
from l2o_graphs.nn.message_passing import SegmentedGraph
from l2o_graphs.tasks import ResidualCNN, mlp
from unusual_models import Tied

MODELS = {"mlp": lambda: mlp([6, 5, 3]), "residual-cnn": lambda: ResidualCNN(channels=3, blocks=2), "tied": Tied,
          "cnn-flatten": lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                                     torch.nn.Linear(3 * 4 * 4, 4))}


class FilmSum(MessagePassing):
    """Sum over incoming edges ``j -> i`` of ``a_j * (1 + e_ji)``: NG-GNN's message, per edge."""

    def __init__(self):
        super().__init__(aggr="add", flow="source_to_target")

    def forward(self, a: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        return self.propagate(edge_index, a=a, e=e)

    def message(self, a_j: Tensor, e: Tensor) -> Tensor:
        return a_j * (1 + e)


def _reference_sums(e: Tensor, a_fwd: Tensor, a_bwd: Tensor, edge_index: Tensor, num_nodes: int):
    """The four sums of ``SegmentedGraph.sums`` with PyG, row-major ``[N, d]`` transposed back."""
    src, dst = edge_index
    film = FilmSum()
    fwd = film(a_fwd.t(), edge_index, e.t())
    bwd = film(a_bwd.t(), edge_index.flip(0), e.t())
    fwd_e = scatter(e.t(), dst, 0, dim_size=num_nodes, reduce="sum")
    bwd_e = scatter(e.t(), src, 0, dim_size=num_nodes, reduce="sum")
    return tuple(t.t() for t in (fwd, fwd_e, bwd, bwd_e))


def _segmented(graph: NeuralGraph, chunk) -> SegmentedGraph:
    segmented = SegmentedGraph.of(graph)
    if chunk is not None:  # several row chunks per dense segment
        segmented = SegmentedGraph(**{**segmented.__dict__, "chunk": chunk})
    assert any(seg.dense is not None for seg in segmented.segments)
    return segmented


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("chunk", [None, 3], ids=["one-chunk", "row-chunks"])
def test_dense_sums_match_pyg_forward_and_backward(name, chunk):
    torch.manual_seed(0)
    graph = NeuralGraph.from_module(MODELS[name]())
    segmented = _segmented(graph, chunk)
    n, d = graph.num_nodes, 4
    e = torch.randn(d, graph.num_edges, dtype=torch.float64, requires_grad=True)
    a_fwd, a_bwd = (torch.randn(d, n, dtype=torch.float64, requires_grad=True) for _ in range(2))
    weights = [torch.randn(d, n, dtype=torch.float64) for _ in range(4)]
    got = segmented.sums(e, a_fwd, a_bwd)
    expected = _reference_sums(e, a_fwd, a_bwd, graph.edge_index, n)
    for g, x in zip(got, expected):
        torch.testing.assert_close(g, x, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(sum((g * w).sum() for g, w in zip(got, weights)), (e, a_fwd, a_bwd))
    reference = torch.autograd.grad(sum((x * w).sum() for x, w in zip(expected, weights)), (e, a_fwd, a_bwd))
    for g, x in zip(grads, reference):
        torch.testing.assert_close(g, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_dense_edge_update_matches_per_edge_reference_forward_and_backward(name):
    torch.manual_seed(0)
    graph = NeuralGraph.from_module(MODELS[name]())
    segmented = _segmented(graph, 3)
    update = EdgeUpdate(node_dim=5, edge_dim=4).double()
    with torch.no_grad():
        update.own.normal_()
    h = torch.randn(graph.num_nodes, 5, dtype=torch.float64, requires_grad=True)
    e = torch.randn(4, graph.num_edges, dtype=torch.float64, requires_grad=True)
    got = update(h, e, segmented)
    src, dst = graph.edge_index
    from_src, from_dst = update.node_terms(h)
    expected = e + (update.own[:, None] * e + from_src[:, src] + from_dst[:, dst]).relu()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((got * weights).sum(), (h, e, update.own))
    reference = torch.autograd.grad((expected * weights).sum(), (h, e, update.own))
    for g, x in zip(grads, reference):
        torch.testing.assert_close(g, x, rtol=1e-10, atol=1e-10)


def test_dense_sums_fail_against_a_wrong_reference():
    """Negative control: the same comparison with the edges' directions swapped must fail."""
    graph = NeuralGraph.from_module(mlp([6, 5, 3]))
    e, a_fwd, a_bwd = torch.randn(4, graph.num_edges), torch.randn(4, graph.num_nodes), torch.randn(4, graph.num_nodes)
    got = SegmentedGraph.of(graph).sums(e, a_fwd, a_bwd)
    wrong = _reference_sums(e, a_fwd, a_bwd, graph.edge_index.flip(0), graph.num_nodes)
    assert not torch.allclose(got[0], wrong[0])


def test_to_pyg_serves_a_stock_pyg_layer_over_a_batch_of_neural_graphs():
    """``NeuralGraph.to_pyg`` gives PyG ``Data``: a stock ``GINEConv`` over a ``Batch`` of two
    architectures equals the layer run on each graph alone."""
    torch.manual_seed(0)
    models = [mlp([4, 6, 3]), ResidualCNN(channels=3, blocks=1)]
    graphs = [NeuralGraph.from_module(m) for m in models]
    k = max(g.kernel_size for g in graphs)
    graphs = [g.with_layout(graphs[1].kernel_shape, max(g.num_slots for g in graphs)) for g in graphs]
    data = []
    for model, graph in zip(models, graphs):
        node_x, edge_x = graph.gather({n: p.detach() for n, p in model.named_parameters()})
        data.append(graph.to_pyg(node_x.flatten(1), edge_x.flatten(1)))
    layer = GINEConv(torch.nn.Linear(graphs[0].num_slots, 8), edge_dim=k)
    batched = Batch.from_data_list(data)
    out = layer(batched.x, batched.edge_index, batched.edge_attr)
    alone = torch.cat([layer(d.x, d.edge_index, d.edge_attr) for d in data])
    assert out.shape == (sum(g.num_nodes for g in graphs), 8)
    torch.testing.assert_close(out, alone)

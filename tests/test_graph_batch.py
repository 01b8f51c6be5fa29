"""Graphs of different architectures batch into one disjoint graph and un-batch exactly."""
import torch
from torch_geometric.data import Data

from l2o_graphs.graph import GraphBatch, NeuralGraph
from l2o_graphs.tasks import ResidualCNN, cnn_flatten, mlp, paper_cnn


def _models():
    torch.manual_seed(0)
    return [mlp([20, 8, 4]), paper_cnn(), cnn_flatten(channels=(3, 5), image_size=12, hidden=7),
            ResidualCNN(channels=4, blocks=1)]


def test_batch_round_trip_and_unbatch():
    models = _models()
    graphs = [NeuralGraph.from_module(m) for m in models]
    batch = GraphBatch(graphs)
    assert batch.kernel_shape == (3, 3) and batch.num_graphs == 4
    params = [dict(m.named_parameters()) for m in models]
    node_x, edge_x = batch.gather(params)
    assert node_x.shape[0] == sum(g.num_nodes for g in graphs) == batch.num_nodes
    assert edge_x.shape == (sum(g.num_edges for g in graphs), 9)
    for original, back in zip(params, batch.scatter(node_x, edge_x)):
        assert all(torch.equal(back[n], p) for n, p in original.items())
    # each piece equals the graph gathered alone in the common frame
    for g, p, (n_i, e_i) in zip(batch.graphs, params, batch.unbatch(node_x, edge_x)):
        n_alone, e_alone = g.gather(p)
        assert torch.equal(n_i, n_alone) and torch.equal(e_i, e_alone)


def test_batch_indices_are_offset_and_disjoint():
    graphs = [NeuralGraph.from_module(m) for m in _models()]
    batch = GraphBatch(graphs)
    src_graph = batch.batch[batch.edge_index[0]]
    dst_graph = batch.batch[batch.edge_index[1]]
    assert torch.equal(src_graph, dst_graph) and torch.equal(src_graph, batch.edge_batch)
    for i, g in enumerate(graphs):
        sel = batch.edge_batch == i
        assert torch.equal(batch.edge_index[:, sel] - batch.node_ptr[i], g.edge_index)
    assert torch.equal(torch.bincount(batch.batch), torch.tensor([g.num_nodes for g in graphs]))


def test_pyg_interop():
    model = mlp([6, 4, 2])
    g = NeuralGraph.from_module(model)
    node_x, edge_x = g.gather(dict(model.named_parameters()))
    data = g.to_pyg(node_x, edge_x)
    assert isinstance(data, Data) and data.num_nodes == g.num_nodes and data.num_edges == g.num_edges
    assert torch.equal(data.edge_attr, edge_x)

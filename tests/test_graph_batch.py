"""Graphs of different architectures batch into one disjoint graph and un-batch exactly."""
import dataclasses

import pytest
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


def test_union_is_one_graph_of_the_members():
    models = _models()
    batch = GraphBatch([NeuralGraph.from_module(m) for m in models])
    union = batch.union(["a", "b", "c", "d"])
    params = [dict(m.named_parameters()) for m in models]
    merged = {f"{prefix}.{n}": p for prefix, member in zip("abcd", params) for n, p in member.items()}
    assert union.param_names == tuple(merged) and union.num_params == sum(g.num_params for g in batch.graphs)
    node_x, edge_x = union.gather(merged)
    batched_nodes, batched_edges = batch.gather(params)
    assert torch.equal(node_x, batched_nodes) and torch.equal(edge_x, batched_edges)
    back = union.scatter(node_x, edge_x)
    assert all(torch.equal(back[n], p) for n, p in merged.items())
    # positional ids of different members never coincide
    for i in range(3):
        first = union.node_pos[batch.node_ptr[i]:batch.node_ptr[i + 1]]
        rest = union.node_pos[batch.node_ptr[i + 1]:]
        assert not set(first.tolist()) & set(rest.tolist())


def test_update_network_on_the_union_equals_each_member_alone():
    from l2o_graphs import features as feats
    from l2o_graphs.nn import build_net

    models = _models()
    batch = GraphBatch([NeuralGraph.from_module(m) for m in models])
    union = batch.union()
    torch.manual_seed(0)
    net = build_net("ng-gnn", update="adam-layer")
    for layer in (net.edge_dec_out, net.node_dec_out):  # zero-initialised: outputs would all be 0
        torch.nn.init.normal_(layer.weight)
        torch.nn.init.normal_(layer.bias)
    features = [{n: torch.randn(*p.shape, feats.NUM_FEATURES) for n, p in m.named_parameters()} for m in models]
    time = feats.time_features(3)
    with torch.no_grad():
        together = net({f"{i}.{n}": f for i, member in enumerate(features) for n, f in member.items()},
                       time, union, {})[0]
        for i, (member, graph) in enumerate(zip(features, batch.graphs)):
            alone = net(member, time, graph, {})[0]
            for name, out in alone.items():
                torch.testing.assert_close(together[f"{i}.{name}"], out, rtol=1e-5, atol=1e-6)
    # negative control: without the node offsets every member's edges join member 0's nodes
    unshifted = [seg.shifted(offset, 0) for g, offset in zip(batch.graphs, batch.edge_ptr.tolist())
                 for seg in g.edge_segments]
    wrong = dataclasses.replace(union, edge_segments=tuple(unshifted))
    with torch.no_grad():
        mixed = net({f"{i}.{n}": f for i, member in enumerate(features) for n, f in member.items()},
                    time, wrong, {})[0]
    assert any(not torch.allclose(mixed[f"1.{n}"], together[f"1.{n}"]) for n in features[1])


def test_union_refuses_bad_prefixes():
    batch = GraphBatch([NeuralGraph.from_module(m) for m in _models()[:2]])
    with pytest.raises(ValueError, match="2 distinct prefixes"):
        batch.union(["a"])
    with pytest.raises(ValueError, match="2 distinct prefixes"):
        batch.union(["a", "a"])

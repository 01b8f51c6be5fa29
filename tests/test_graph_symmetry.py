"""Permuting hidden neurons leaves the function unchanged and the neural graph equal up to relabelling."""
import pytest
import torch
from torch import nn

from l2o_graphs.graph import NODE_ROLES, NeuralGraph
from l2o_graphs.tasks import ResidualCNN, cnn_flatten, mlp, paper_cnn
from permutations import (assert_graphs_match, node_map_from_depth_perms, permute_residual_cnn,
                          permute_sequential, residual_perms)


def _hidden_sizes(model: nn.Sequential):
    layers = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    return [m.out_features if isinstance(m, nn.Linear) else m.out_channels for m in layers[:-1]]


@pytest.mark.parametrize("make, shape", [
    (lambda: mlp([20, 16, 12, 8, 5]), (4, 20)),
    (lambda: paper_cnn(), (4, 1, 28, 28)),
    (lambda: cnn_flatten(channels=(4, 6), image_size=12, hidden=10), (4, 1, 12, 12)),
])
def test_sequential_permutation_gives_relabelled_graph(make, shape):
    torch.manual_seed(0)
    model = make().eval()
    g = torch.Generator().manual_seed(1)
    perms = [torch.randperm(n, generator=g) for n in _hidden_sizes(model)]
    permuted = permute_sequential(model, perms)
    x = torch.randn(shape)
    torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)  # a true symmetry

    graph = NeuralGraph.from_module(model)
    graph_p = NeuralGraph.from_module(permuted)
    assert graph_p is graph  # same structure: the cached topology is reused
    node_map = node_map_from_depth_perms(graph, {d + 1: p for d, p in enumerate(perms)})
    assert not torch.equal(node_map, torch.arange(graph.num_nodes))
    assert_graphs_match(graph, dict(model.named_parameters()), graph_p, dict(permuted.named_parameters()),
                        node_map)


def test_residual_cnn_with_batchnorm_permutation():
    torch.manual_seed(0)
    model = ResidualCNN(channels=8, blocks=2)
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    model.eval()
    perms = residual_perms(model, torch.Generator().manual_seed(3))
    permuted = permute_residual_cnn(model, perms)
    x = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(permuted(x), model(x), atol=1e-5, rtol=1e-5)

    graph = NeuralGraph.from_module(model)
    assert int((graph.edge_kind == 1).sum()) == 2 * 8  # one identity edge per channel per block
    depth_perms = {1: perms["stream"], 2: perms["inner0"], 3: perms["stream"], 4: perms["inner1"],
                   5: perms["stream"]}
    node_map = node_map_from_depth_perms(graph, depth_perms)
    assert_graphs_match(graph, dict(model.named_parameters()), NeuralGraph.from_module(permuted),
                        dict(permuted.named_parameters()), node_map)


def test_inconsistent_residual_permutation_is_not_a_symmetry():
    """Teeth for the helpers: permuting a block's output without the stream changes the function,
    and comparing graphs with the wrong relabelling fails."""
    torch.manual_seed(0)
    model = ResidualCNN(channels=8, blocks=1).eval()
    perms = residual_perms(model, torch.Generator().manual_seed(3))
    broken = dict(perms, stream=torch.arange(8))
    permuted = permute_residual_cnn(model, perms)
    # Stream permuted only in the block, not in the stem: the addition mixes channels.
    wrong = permute_residual_cnn(model, broken)
    with torch.no_grad():
        wrong.blocks[0].conv2.weight.copy_(wrong.blocks[0].conv2.weight[perms["inner0"]])
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(wrong(x), model(x), atol=1e-3)
    graph = NeuralGraph.from_module(model)
    identity = torch.arange(graph.num_nodes)
    with pytest.raises(AssertionError):
        assert_graphs_match(graph, dict(model.named_parameters()), graph, dict(permuted.named_parameters()),
                            identity)


def test_positional_ids_keep_hidden_symmetry_only():
    model = mlp([6, 5, 4, 3])
    g = NeuralGraph.from_module(model)
    role = [NODE_ROLES[r] for r in g.node_role.tolist()]
    assert role == ["input"] * 6 + ["hidden"] * 9 + ["output"] * 3
    inputs, outputs = g.node_pos[:6], g.node_pos[-3:]
    assert inputs.unique().numel() == 6 and outputs.unique().numel() == 3  # each its own id
    assert g.node_pos[6:11].unique().numel() == 1 and g.node_pos[11:15].unique().numel() == 1
    assert g.node_pos.unique().numel() == 6 + 2 + 3
    assert torch.equal(g.node_index[:6], torch.arange(6)) and bool((g.node_index[6:15] == -1).all())


def test_input_permutation_is_not_a_graph_symmetry():
    """Input neurons are ordered: relabelling them breaks the positional ids."""
    g = NeuralGraph.from_module(mlp([6, 5, 3]))
    node_map = torch.arange(g.num_nodes)
    node_map[:6] = torch.tensor([1, 0, 2, 3, 4, 5])
    assert not torch.equal(g.node_pos[node_map], g.node_pos)

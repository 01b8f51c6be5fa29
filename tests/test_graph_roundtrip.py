"""gather/scatter round trips are exact, and parameters land where the wiring says."""
import warnings

import pytest
import torch
import torchvision
from torch import nn

from l2o_graphs.graph import ACTIVATIONS, SLOT_KINDS, NeuralGraph, NeuralGraphWarning
from l2o_graphs.tasks import ResidualCNN, cnn_flatten, mlp, paper_cnn


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 7), nn.Linear(7, 3)

    def forward(self, x):
        h = self.fc1(x)
        if h.sum() > 0:
            h = torch.relu(h)
        return self.fc2(h)


def _random_like_params(model, *feature_shape, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    return {n: torch.randn(*p.shape, *feature_shape, generator=gen).to(dtype) for n, p in model.named_parameters()}


def _assert_round_trip(model, example_input=None, with_features=True):
    graph = NeuralGraph.from_module(model, example_input)
    cases = [dict(model.named_parameters())]
    if with_features:  # a trailing feature shape, and another dtype
        cases += [_random_like_params(model, 3, 2), _random_like_params(model, dtype=torch.bfloat16)]
    for tensors in cases:
        node_x, edge_x = graph.gather(tensors)
        assert node_x.shape[:2] == (graph.num_nodes, graph.num_slots)
        assert edge_x.shape[:2] == (graph.num_edges, graph.kernel_size)
        back = graph.scatter(node_x, edge_x)
        assert list(back) == list(tensors)
        for name, t in tensors.items():
            assert back[name].shape == t.shape and back[name].dtype == t.dtype
            assert torch.equal(back[name], t), name  # bitwise
        # every stored value sits exactly once in the graph tensors: nothing lost, nothing doubled
        stored = int(graph.node_mask.sum()) + int(graph.edge_mask.sum())
        assert stored == sum(p.numel() for p in model.parameters()) == graph.num_params
        assert int(node_x[~graph.node_mask].count_nonzero()) == 0
        assert int(edge_x[~graph.edge_mask].count_nonzero()) == 0
    return graph


@pytest.mark.parametrize("sizes", [[3, 2], [10, 8, 4], [12, 16, 8, 6, 3], [784, 64, 64, 64, 32, 10]])
def test_mlps_of_several_depths(sizes):
    g = _assert_round_trip(mlp(sizes))
    assert g.num_nodes == sum(sizes)
    assert g.num_edges == sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert g.kernel_shape == (1, 1) and g.traced


def test_cnn_with_global_pooling():
    g = _assert_round_trip(paper_cnn())
    assert g.num_nodes == 1 + 16 + 32 + 32 + 10 and g.kernel_shape == (3, 3)


@pytest.mark.parametrize("with_example", [False, True])
def test_cnn_with_flatten_into_linear(with_example):
    model = cnn_flatten(channels=(4, 6), image_size=12, hidden=10)  # maps 6x6 then 3x3
    g = _assert_round_trip(model, torch.randn(1, 1, 12, 12) if with_example else None)
    lin = model[5]
    assert lin.in_features == 6 * 9
    # one edge per (neuron, channel) pair carrying the 3x3 spatial map
    assert g.num_edges == 4 * 1 + 6 * 4 + 10 * 6 + 10 * 10 and g.kernel_shape == (3, 3)


def test_flatten_of_non_square_map_uses_example_input():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 6, 3))
    g = _assert_round_trip(model, torch.randn(1, 1, 6, 8))
    assert g.kernel_shape == (4, 6)
    with pytest.warns(NeuralGraphWarning, match="unknown shape"):
        g2 = NeuralGraph.from_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 6, 3)))
    place = next(p for p in g2.edge_places if p.name == "2.weight")
    assert place.kernel == (1, 24) and g2.kernel_shape == (3, 24)


def test_residual_cnn_with_batchnorm():
    model = ResidualCNN(channels=8, blocks=2)
    g = _assert_round_trip(model)
    kinds = {SLOT_KINDS[k] for k in g.node_slot_kind.unique().tolist()}
    assert kinds == {"empty", "bias", "norm_weight", "norm_bias"}
    nx, _ = g.gather(dict(model.named_parameters()))
    stem_nodes = (g.node_layer == 1).nonzero().squeeze(1)
    assert torch.equal(nx[stem_nodes, 0], model.stem_bn.weight.detach())  # the stem conv has no bias
    assert torch.equal(nx[stem_nodes, 1], model.stem_bn.bias.detach())
    # residual edges: identity kernel, from the stream into each block's output
    res = g.edge_kind == 1
    src, dst = g.edge_index[:, res]
    assert torch.equal(g.node_layer[src].unique(), torch.tensor([1, 3]))
    assert torch.equal(g.node_layer[dst].unique(), torch.tensor([3, 5]))
    assert torch.equal(g.structural_edge_x()[res].sum(1), torch.ones(int(res.sum())))


@pytest.mark.slow
def test_torchvision_resnet18():
    g = _assert_round_trip(torchvision.models.resnet18(num_classes=10), with_features=False)
    assert g.kernel_shape == (7, 7) and int((g.edge_kind == 1).sum()) > 0


def test_transformer_encoder_layer_builds_and_round_trips():
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    with pytest.warns(NeuralGraphWarning, match="could not trace"):
        g = _assert_round_trip(layer)
    assert not g.traced
    # attention: q, k, v neurons (fixed roles) fed by the 16 inputs, out_proj reads the v neurons
    assert int((g.node_role == 3).sum()) == 48


def test_model_that_does_not_trace_falls_back_to_module_order():
    model = Untraceable()
    with pytest.warns(NeuralGraphWarning, match="registration order"):
        g = NeuralGraph.from_module(model)
    assert not g.traced and g.num_nodes == 5 + 7 + 3 and g.num_edges == 35 + 21
    _assert_round_trip(model)


def test_weights_and_biases_sit_on_the_right_nodes_and_edges():
    model = mlp([3, 4, 2])
    g = NeuralGraph.from_module(model)
    fc1, fc2 = model[1], model[3]
    nx, ex = g.gather(dict(model.named_parameters()))
    # edge (input i -> hidden o) carries fc1.weight[o, i]; no bias on input nodes (the
    # reference code's off-by-input-layer defect)
    for e in range(12):
        s, t = g.edge_index[:, e].tolist()
        assert ex[e, 0] == fc1.weight[t - 3, s]
    assert torch.equal(nx[3:7, 0], fc1.bias.detach()) and torch.equal(nx[7:9, 0], fc2.bias.detach())
    assert not bool(g.node_mask[:3].any())
    assert torch.equal(g.node_activation[3:7], torch.full((4,), ACTIVATIONS["relu"]))
    assert bool((g.node_activation[7:] == 0).all())


def test_conv_kernels_are_centred_in_the_largest_kernel():
    model = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    g = NeuralGraph.from_module(model)
    _, ex = g.gather(dict(model.named_parameters()))
    ex = ex.view(-1, 5, 5)
    k3 = model[2].weight.detach().reshape(4, 3, 3)
    assert torch.equal(ex[2:, 1:4, 1:4], k3)
    assert int(ex[2:].count_nonzero()) == int(k3.count_nonzero())


def test_conv1d_and_grouped_conv():
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.ReLU(), nn.Conv1d(8, 8, 5, groups=4), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2))
    g = _assert_round_trip(model)
    assert g.kernel_shape == (1, 5)
    assert g.num_edges == 8 * 4 + 8 * 2 + 2 * 8  # grouped: each output reads its group's 2 channels
    # output channel o of the grouped conv reads input channels of its group only
    grouped = slice(32, 48)
    src, dst = g.edge_index[:, grouped]
    in_group = (src - 4) // 2  # input channel ids of layer 1 start at node 4
    out_group = (dst - 12) // 2
    assert torch.equal(in_group, out_group)


def test_gather_with_trailing_features_matches_per_feature_gathers():
    model = paper_cnn()
    g = NeuralGraph.from_module(model)
    feats = _random_like_params(model, 4)
    nx, ex = g.gather(feats)
    for k in range(4):
        nk, ek = g.gather({n: t[..., k] for n, t in feats.items()})
        assert torch.equal(nx[..., k], nk) and torch.equal(ex[..., k], ek)


def test_topology_is_cached_by_structure():
    a, b = mlp([5, 6, 2]), mlp([5, 6, 2])
    assert NeuralGraph.from_module(a) is NeuralGraph.from_module(b)
    assert NeuralGraph.from_module(mlp([5, 7, 2])) is not NeuralGraph.from_module(a)
    assert NeuralGraph.from_module(mlp([5, 6, 2], activation="tanh")) is not NeuralGraph.from_module(a)


def test_wrappers_are_read_through():
    model = mlp([5, 6, 2])
    wrapped = nn.DataParallel(model)
    assert NeuralGraph.from_module(wrapped) is NeuralGraph.from_module(model)


def test_no_warning_for_fully_understood_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in (mlp([4, 3]), paper_cnn(width=2), ResidualCNN(channels=4, blocks=1)):
            NeuralGraph.from_module(model)


def test_layer_owner_ties_biases_and_norms_to_the_weight_feeding_their_neurons():
    resnet = ResidualCNN(channels=6, blocks=1)
    owner = NeuralGraph.from_module(resnet).layer_owner
    assert set(owner) == {name for name, _ in resnet.named_parameters()}
    assert owner["stem_bn.weight"] == owner["stem_bn.bias"] == "stem.weight"
    assert owner["blocks.0.bn1.bias"] == "blocks.0.conv1.weight"
    assert owner["blocks.0.bn2.weight"] == "blocks.0.conv2.weight"
    assert owner["head.bias"] == "head.weight"
    assert all(owner[name] == name for name, p in resnet.named_parameters() if p.dim() > 1)
    # a normalisation of the inputs sits on neurons that no weight feeds: its own layer
    normed = nn.Sequential(nn.LayerNorm(5), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    assert NeuralGraph.from_module(normed).layer_owner == {
        "0.weight": "0.weight", "0.bias": "0.bias", "1.weight": "1.weight", "1.bias": "1.weight",
        "3.weight": "3.weight", "3.bias": "3.weight"}

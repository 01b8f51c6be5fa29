"""Shapes of models the graph must still get right: tied weights, forwards that differ only by a
plain attribute, parameters used as constants, zero-size and scalar parameters, no edges."""
import warnings

import pytest
import torch
from torch import nn

from l2o_graphs.graph import NeuralGraph, NeuralGraphWarning
from l2o_graphs.graph.wiring import clear_graph_cache
from l2o_graphs.graph.layout import ROLE_INPUT
from unusual_models import Tied, WithScalar


class MaybeResidual(nn.Module):
    """Forward depends on a plain attribute, which no module or parameter shows."""

    def __init__(self, residual: bool):
        super().__init__()
        self.residual = residual
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h) + h if self.residual else self.fc2(h)


class Scaled(nn.Module):
    """A learned per-channel scale multiplying a hidden layer (a ``get_attr`` in the trace)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.scale)


def _assert_round_trip(graph, model):
    tensors = {n: torch.randn(p.shape) for n, p in model.named_parameters()}
    back = graph.scatter(*graph.gather(tensors))
    assert list(back) == list(tensors)
    for name, t in tensors.items():
        assert torch.equal(back[name], t), name


def test_tied_weights_are_placed_once_and_round_trip():
    # the warning comes with the build: start from an empty topology cache whatever ran before
    clear_graph_cache()
    model = Tied()
    with pytest.warns(NeuralGraphWarning, match="already placed"):
        graph = NeuralGraph.from_module(model)
    assert graph.param_names == ("a.weight", "a.bias", "b.bias")
    assert graph.num_params == 16 + 4 + 4
    assert int(graph.edge_mask.sum()) + int(graph.node_mask.sum()) == graph.num_params
    _assert_round_trip(graph, model)


def test_forwards_differing_by_a_plain_attribute_get_different_graphs():
    plain, residual = NeuralGraph.from_module(MaybeResidual(False)), NeuralGraph.from_module(MaybeResidual(True))
    assert plain is not residual
    assert plain.num_edges == 32 and residual.num_edges == 32 + 4  # identity edges of the addition
    assert NeuralGraph.from_module(MaybeResidual(True)) is residual  # still cached


def test_parameter_operand_keeps_the_channels_it_scales():
    graph = NeuralGraph.from_module(Scaled())  # warns: the scale has no place in the wiring
    assert int((graph.node_role == ROLE_INPUT).sum()) == 3  # fc2 reads fc1's neurons, no new inputs
    src, dst = graph.edge_index
    fc2 = graph.edge_places[[p.name for p in graph.edge_places].index("fc2.weight")]
    fc2_src = src[fc2.start:fc2.start + fc2.rows]
    assert bool((graph.node_layer[fc2_src] == 1).all())


def test_a_single_layer_is_read_as_a_layer():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = NeuralGraph.from_module(nn.Linear(3, 2))
        norm = NeuralGraph.from_module(nn.LayerNorm(5))
    assert graph.num_nodes == 5 and graph.num_edges == 6
    assert norm.num_nodes == 5 and norm.num_edges == 0 and norm.num_slots == 2


@pytest.mark.parametrize("model", [nn.Linear(0, 3), nn.Linear(3, 0), nn.LayerNorm(5), WithScalar()],
                         ids=["no-inputs", "no-outputs", "no-edges", "scalar"])
def test_zero_size_scalar_and_edgeless_models_round_trip(model):
    graph = NeuralGraph.from_module(model)
    assert graph.num_params == sum(p.numel() for p in model.parameters())
    assert int(graph.edge_mask.sum()) + int(graph.node_mask.sum()) == graph.num_params
    _assert_round_trip(graph, model)

"""Bad input gives a clear error, unsupported layers the documented fallback with its warning."""
import pytest
import torch
from torch import nn

from l2o_graphs.graph import NeuralGraph, NeuralGraphWarning
from l2o_graphs.tasks import mlp


class WithEmbeddingAndRawParams(nn.Module):
    """An embedding, a parameter used functionally, a scalar and a 3-D tensor: none is a neuron layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.proj = nn.Parameter(torch.randn(6, 4))
        self.temperature = nn.Parameter(torch.tensor(2.0))
        self.mixer = nn.Parameter(torch.randn(3, 4, 5))
        self.head = nn.Linear(4, 2)

    def forward(self, tokens):
        h = self.embed(tokens) @ self.proj / self.temperature
        return self.head(h + self.mixer.sum())


def test_module_without_parameters_is_rejected():
    with pytest.raises(ValueError, match="has no parameters"):
        NeuralGraph.from_module(nn.Sequential(nn.ReLU(), nn.Flatten()))


@pytest.mark.parametrize("bad", [torch.randn(3, 3), "mlp", [nn.Linear(2, 2)], None])
def test_non_module_is_rejected(bad):
    with pytest.raises(TypeError, match="expects a torch.nn.Module"):
        NeuralGraph.from_module(bad)


def test_unplaceable_parameters_get_block_graphs_and_one_warning():
    model = WithEmbeddingAndRawParams()
    with pytest.warns(NeuralGraphWarning) as record:
        g = NeuralGraph.from_module(model)
    messages = [str(w.message) for w in record if issubclass(w.category, NeuralGraphWarning)]
    assert len(messages) == 1
    for name in ("embed.weight", "proj", "temperature", "mixer"):
        assert name in messages[0]
    assert "head.weight" not in messages[0].split("could not be placed")[1].split(";")[0]
    params = dict(model.named_parameters())
    nx, ex = g.gather(params)
    back = g.scatter(nx, ex)
    assert all(torch.equal(back[n], p) for n, p in params.items())
    # the embedding is an 11 x 6 bipartite block of fixed nodes; the 3-D tensor a 3 x 4 block of 1x5 kernels
    assert int((g.edge_kind == 2).sum()) == 11 * 6 + 6 * 4 + 3 * 4
    assert g.kernel_shape == (1, 5)


def test_gather_rejects_wrong_names_and_shapes():
    model = mlp([4, 3, 2])
    g = NeuralGraph.from_module(model)
    params = dict(model.named_parameters())
    with pytest.raises(KeyError, match="missing"):
        g.gather({n: p for n, p in params.items() if n != "1.bias"})
    with pytest.raises(KeyError, match="unexpected"):
        g.gather({**params, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="1.weight"):
        g.gather({**params, "1.weight": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match="trailing feature shape"):
        g.gather({n: p.unsqueeze(-1) if n == "1.bias" else p for n, p in params.items()})
    nx, ex = g.gather(params)
    with pytest.raises(ValueError, match="edge_x"):
        g.scatter(nx, ex[:-1])
    with pytest.raises(ValueError, match="node_x"):
        g.scatter(nx[:, :, None].expand(-1, -1, 2)[:-1], ex)


def test_example_input_that_does_not_run_is_reported():
    with pytest.raises(ValueError, match="example_input does not run"):
        NeuralGraph.from_module(mlp([4, 3, 2], flatten_input=False), torch.randn(2, 5))


def test_layer_reading_an_unknown_input_gets_new_input_neurons_with_a_warning():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.out(self.a(x) * self.b(x))  # a product of two layers: not a neuron layout

    model = Gated()
    with pytest.warns(NeuralGraphWarning, match="could not be followed"):
        g = NeuralGraph.from_module(model)
    assert int((g.node_role == 0).sum()) == 4 + 6

"""The optimizer on unusual models and unusual uses of the torch.optim interface."""
import copy

import pytest
import torch
from torch import nn

from l2o_graphs import NeuralGraphOptimizer, NeuralGraphWarning
from l2o_graphs.features import element_features
from l2o_graphs.tasks import mlp
from unusual_models import Tied, WithEmpty, WithScalar

NETS = ["ng-gnn", "ng-t", "ff", "lstm"]


def _step(model, opt, seed=0):
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(seed))
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()


@pytest.mark.filterwarnings("ignore::l2o_graphs.NeuralGraphWarning")
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("make", [Tied, WithScalar, WithEmpty, lambda: nn.LayerNorm(4)],
                         ids=["tied", "scalar", "zero-size", "no-edges"])
def test_every_net_steps_on_unusual_models(net, make):
    torch.manual_seed(0)
    model = make()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = NeuralGraphOptimizer(model, weights=None, net=net)
    _step(model, opt)
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        if p.numel():
            assert not torch.equal(p, before[name]), name
    if isinstance(model, Tied):
        assert model.b.weight is model.a.weight


def test_scalar_features_are_those_of_a_one_element_tensor():
    p, g, v = torch.tensor(0.3), torch.tensor(-0.2), torch.tensor(0.01)
    m = torch.tensor([0.1, -0.2, 0.3, 0.05, 0.02])
    scalar = element_features(p, g, m, v, step=3)
    one = element_features(p.reshape(1), g.reshape(1), m.reshape(1, 5), v.reshape(1), step=3)
    assert scalar.shape == (13,)
    assert torch.equal(scalar, one[0])
    assert torch.allclose(scalar[2:7], torch.sign(m))  # each momentum over its own RMS, not over the five


def test_param_group_added_later_is_trained_with_its_own_lr():
    model = mlp([4, 5, 3])
    first, second = list(model[1].parameters()), list(model[3].parameters())
    opt = NeuralGraphOptimizer(first, weights=None, module=model)
    opt.add_param_group({"params": second, "lr": 0.5})
    before = [p.detach().clone() for p in second]
    _step(model, opt)
    assert all(not torch.equal(a, b) for a, b in zip(before, second))
    assert opt.param_groups[1]["lr"] == 0.5


def test_param_group_without_module_extends_the_block_graph():
    model = mlp([4, 5, 3])
    with pytest.warns(NeuralGraphWarning):
        opt = NeuralGraphOptimizer(model[1].parameters(), weights=None)
    opt.add_param_group({"params": list(model[3].parameters())})
    assert opt.graph.num_params == sum(p.numel() for p in model.parameters())
    before = model[3].weight.detach().clone()
    _step(model, opt)
    assert not torch.equal(before, model[3].weight)


def test_foreign_param_group_is_rejected_and_not_kept():
    model = mlp([4, 5, 3])
    opt = NeuralGraphOptimizer(model, weights=None)
    with pytest.raises(ValueError, match="do not belong"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))]})
    assert len(opt.param_groups) == 1


def test_failed_load_state_dict_changes_nothing():
    model = mlp([4, 5, 3])
    opt = NeuralGraphOptimizer(model, weights=None)
    _step(model, opt)
    other_model = mlp([4, 5, 3])
    other = NeuralGraphOptimizer([{"params": [other_model[1].weight]}, {"params": list(other_model[3].parameters())}],
                                 weights=None, seed=1, module=other_model)
    weights = copy.deepcopy(other.net.state_dict())
    with pytest.raises(ValueError):
        other.load_state_dict(opt.state_dict())  # one group against two
    for k, v in other.net.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert len(other.state) == 0

"""A learned step on a hidden-permuted network equals the permuted step on the original."""
from typing import Callable, Tuple

import pytest
import torch
from torch import Tensor, nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.features import NUM_FEATURES
from l2o_graphs.nn.base import UpdateNet, flatten_features, split_outputs
from l2o_graphs.rules import RULES
from l2o_graphs.tasks import ResidualCNN, cnn_flatten, mlp
from permutations import permute_residual_cnn, permute_sequential, residual_perms


class FlatParameterMLP(UpdateNet):
    """Deliberately NOT equivariant: an MLP over the whole flattened feature vector."""

    def __init__(self, num_params: int, hidden: int = 4):
        super().__init__(num_params=num_params, hidden=hidden)
        self.net = nn.Sequential(nn.Linear(num_params * NUM_FEATURES, hidden), nn.Tanh(),
                                 nn.Linear(hidden, num_params * 2))

    def forward(self, features, time, graph, net_state, kernels="torch"):
        flat, shapes = flatten_features(features)
        return split_outputs(self.net(flat.reshape(1, -1)).reshape(-1, 2), shapes), dict(net_state)


def _make_optimizer(model: nn.Module, net: str, rule: str = "paper", kernels: str = "auto") -> NeuralGraphOptimizer:
    if net == "control":
        opt = NeuralGraphOptimizer(model, weights=None, net="ff")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            opt.net = FlatParameterMLP(sum(p.numel() for p in model.parameters()))
        return opt
    opt = NeuralGraphOptimizer(model, weights=None, net=net, seed=0, net_config={"update": rule}, kernels=kernels)
    if RULES[rule].zero_init:  # as after meta-training: outputs that are not zero, so the rule is used
        with torch.random.fork_rng():
            torch.manual_seed(1)
            for name, p in opt.net.named_parameters():
                if "dec_out" in name:
                    nn.init.normal_(p, std=0.5)
    return opt


def _train(model: nn.Module, net: str, x: Tensor, y: Tensor, steps: int = 3, rule: str = "paper",
           kernels: str = "auto") -> nn.Module:
    opt = _make_optimizer(model, net, rule, kernels)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def _max_equivariance_error(make: Callable[[], nn.Module], permute: Callable[[nn.Module], nn.Module],
                            shape: Tuple[int, ...], net: str, rule: str = "paper", kernels: str = "auto") -> float:
    torch.manual_seed(0)
    model = make()
    initial = [p.detach().clone() for p in model.parameters()]
    twin = permute(model)
    x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
    torch.testing.assert_close(twin(x), model(x), atol=1e-5, rtol=1e-5)
    trained = _train(model, net, x, y, rule=rule, kernels=kernels)
    trained_twin = _train(twin, net, x, y, rule=rule, kernels=kernels)
    moved = max((a - b).abs().max().item() for a, b in zip(trained.parameters(), initial))
    assert moved > 1e-4, "the optimizer did not move the parameters"
    expected = permute(trained)
    return max((a - b).abs().max().item() for a, b in zip(expected.parameters(), trained_twin.parameters()))


def _case(name: str):
    gen = torch.Generator().manual_seed(1)
    if name == "mlp":
        perms = [torch.randperm(10, generator=gen), torch.randperm(8, generator=gen)]
        return lambda: mlp([12, 10, 8, 10]), lambda m: permute_sequential(m, perms), (6, 12)
    if name == "cnn-flatten":
        perms = [torch.randperm(n, generator=gen) for n in (4, 6, 7)]
        return (lambda: cnn_flatten(channels=(4, 6), image_size=8, hidden=7),
                lambda m: permute_sequential(m, perms), (5, 1, 8, 8))
    perms = residual_perms(ResidualCNN(channels=6, blocks=2), gen)
    return lambda: ResidualCNN(channels=6, blocks=2), lambda m: permute_residual_cnn(m, perms), (5, 1, 8, 8)


@pytest.mark.parametrize("net", ["ng-gnn", "ng-t", "ff", "lstm"])
@pytest.mark.parametrize("arch", ["mlp", "cnn-flatten", "residual-cnn"])
def test_learned_step_is_equivariant(net, arch):
    make, permute, shape = _case(arch)
    assert _max_equivariance_error(make, permute, shape, net) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn-flatten", "residual-cnn"])
def test_learned_step_with_triton_kernels_is_equivariant(arch):
    """The kernels' step (through Triton's interpreter on a CPU) on the permuted twins."""
    make, permute, shape = _case(arch)
    assert _max_equivariance_error(make, permute, shape, "ng-gnn", kernels="triton") < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("rule", [r for r in RULES if r != "paper"])
@pytest.mark.parametrize("arch", ["mlp", "cnn-flatten", "residual-cnn"])
def test_every_update_rule_is_equivariant(rule, arch):
    make, permute, shape = _case(arch)
    assert _max_equivariance_error(make, permute, shape, "ng-gnn", rule) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn-flatten", "residual-cnn"])
def test_non_equivariant_control_fails_the_same_check(arch):
    make, permute, shape = _case(arch)
    assert _max_equivariance_error(make, permute, shape, "control") > 1e-4

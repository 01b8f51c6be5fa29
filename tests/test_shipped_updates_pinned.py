"""The shipped optimizer's updates, pinned: three steps on the equivariance test networks must
give the parameters stored in ``tests/data/shipped_updates.pt`` to float rounding. Refactors of
the update path (features, networks, rules) must leave them unchanged; a deliberate change of
the shipped weights or rule rewrites the file:
``python tests/test_shipped_updates_pinned.py --write`` (and says so in its commit)."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.tasks import ResidualCNN, cnn_flatten, mlp

PINNED = Path(__file__).with_name("data") / "shipped_updates.pt"
MODELS = {"mlp": (lambda: mlp([12, 10, 8, 10]), (6, 12)),
          "cnn-flatten": (lambda: cnn_flatten(channels=(4, 6), image_size=8, hidden=7), (5, 1, 8, 8)),
          "residual-cnn": (lambda: ResidualCNN(channels=6, blocks=2), (5, 1, 8, 8))}


def trained(name: str, kernels: str = "torch") -> dict:
    """Parameters after three steps of ``NeuralGraphOptimizer(model)`` (shipped weights and rule)."""
    make, shape = MODELS[name]
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
    opt = NeuralGraphOptimizer(model, kernels=kernels, autocast=False)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("kernels", ["torch", pytest.param("triton", marks=pytest.mark.slow)])  # interpreted: slow
def test_shipped_updates_are_unchanged(name, kernels):
    pinned = torch.load(PINNED, weights_only=True)[name]
    got = trained(name, kernels)
    assert got.keys() == pinned.keys()
    for key, value in got.items():
        torch.testing.assert_close(value, pinned[key], rtol=1e-5, atol=1e-6, msg=key)


def test_the_pin_notices_a_changed_step():
    """Negative control: the same check fails for parameters one step further."""
    pinned = torch.load(PINNED, weights_only=True)["mlp"]
    make, shape = MODELS["mlp"]
    torch.manual_seed(0)
    model = make()
    x, y = torch.randn(shape), torch.randint(0, 10, (shape[0],))
    opt = NeuralGraphOptimizer(model)
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert any(not torch.allclose(p, pinned[n], rtol=1e-5, atol=1e-6) for n, p in model.named_parameters())


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    torch.save({name: trained(name) for name in MODELS}, PINNED)
    print(f"wrote {PINNED}")

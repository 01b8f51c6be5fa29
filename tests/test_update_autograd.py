"""The pure update is differentiable with respect to the update network (meta-training needs it)."""
import pytest
import torch

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn import build_net
from l2o_graphs.optim import init_state, learned_update
from l2o_graphs.tasks import ResidualCNN, mlp


@pytest.mark.parametrize("net_name", ["ng-gnn", "ng-t", "ff", "lstm"])
@pytest.mark.parametrize("make", [lambda: mlp([6, 5, 3]), lambda: ResidualCNN(channels=3, blocks=1)],
                         ids=["mlp", "residual-cnn"])
def test_gradients_reach_every_meta_parameter(net_name, make):
    torch.manual_seed(0)
    model = make()
    net = build_net(net_name)
    graph = NeuralGraph.from_module(model) if net.uses_graph else None
    params = {n: p.detach() for n, p in model.named_parameters()}
    state = init_state(params, net)
    for _ in range(2):  # two unrolled steps, the second reading the first's output
        grads = {n: torch.randn_like(p) for n, p in params.items()}
        new, state = learned_update(net, graph, params, grads, state)
        params = {n: new.get(n, p) for n, p in params.items()}
    sum(p.square().sum() for p in params.values()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(bool(torch.isfinite(p.grad).all()) for p in net.parameters())

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


MODELS = [lambda: mlp([6, 5, 3]), lambda: ResidualCNN(channels=3, blocks=1),
          lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                      torch.nn.Linear(3 * 4 * 4, 4))]
MODEL_IDS = ["mlp", "residual-cnn", "cnn-flatten"]


def _steps(net, graph, params, grads_seq, grad_mode, workspace=None):
    state = init_state(params, net)
    out = []
    with torch.set_grad_enabled(grad_mode):
        for grads in grads_seq:
            new, state = learned_update(net, graph, params, grads, state, workspace=workspace)
            params = {n: new.get(n, p).detach() for n, p in params.items()}
            out.append(params)
    return out


@pytest.mark.parametrize("net_name", ["ng-gnn", "ng-t", "ff", "lstm"])
@pytest.mark.parametrize("make", MODELS, ids=MODEL_IDS)
def test_no_grad_path_matches_autograd_path(net_name, make):
    """Without autograd the graph nets update edge states in place and reuse feature buffers from a
    workspace; with autograd they build new tensors. Both must compute the same update."""
    torch.manual_seed(0)
    model = make()
    net = build_net(net_name)
    graph = NeuralGraph.from_module(model) if net.uses_graph else None
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads_seq = [{n: torch.randn_like(p) for n, p in params.items()} for _ in range(3)]
    workspace = {}
    with_grad = _steps(net, graph, params, grads_seq, True)
    without = _steps(net, graph, params, grads_seq, False, workspace)
    for a, b in zip(with_grad, without):
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-7)
    assert workspace, "the no-grad path should have kept its feature buffers"


def test_workspace_buffers_are_reused_only_without_autograd():
    torch.manual_seed(0)
    model = mlp([6, 5, 3])
    net = build_net("ng-gnn")
    graph = NeuralGraph.from_module(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    workspace = {}
    with torch.no_grad():
        learned_update(net, graph, params, grads, init_state(params, net), workspace=workspace)
    first = {k: v.data_ptr() for k, v in workspace.items()}
    assert set(first) == {"node_x", "edge_x"}
    with torch.no_grad():
        learned_update(net, graph, params, grads, init_state(params, net), workspace=workspace)
    assert {k: v.data_ptr() for k, v in workspace.items()} == first
    new, _ = learned_update(net, graph, params, grads, init_state(params, net), workspace=workspace)
    assert {k: v.data_ptr() for k, v in workspace.items()} == first  # untouched under autograd
    sum(p.sum() for p in new.values()).backward()  # and the autograd graph is intact


@pytest.mark.parametrize("net_name", ["ng-gnn", "ng-t"])
def test_graph_nets_accept_features_in_any_layout(net_name):
    """A dict of per-parameter features (laid out row-major by ``graph.gather``) and the same
    values in channel-first ``GraphFeatures`` give the same outputs."""
    from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
    from l2o_graphs.nn import GraphFeatures

    torch.manual_seed(0)
    model = ResidualCNN(channels=3, blocks=1)
    net = build_net(net_name)
    graph = NeuralGraph.from_module(model)
    feats = {n: torch.randn(*p.shape, NUM_FEATURES) for n, p in model.named_parameters()}
    time = torch.rand(NUM_TIME_FEATURES)
    node_x, edge_x = graph.gather(feats)
    channel_first = torch.zeros(NUM_FEATURES, *edge_x.shape[:2]).permute(1, 2, 0)
    channel_first.copy_(edge_x)
    with torch.no_grad():
        from_dict, _ = net(feats, time, graph, {})
        from_layout, _ = net(GraphFeatures(node_x, channel_first), time, graph, {})
    for n in from_dict:
        torch.testing.assert_close(from_dict[n], from_layout[n])

"""Property-based round trips over randomly drawn architectures."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from l2o_graphs.graph import NeuralGraph


@st.composite
def conv_nets(draw):
    layers, channels = [], draw(st.integers(1, 3))
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 6))
        k = draw(st.sampled_from([1, 3, 5]))
        layers += [nn.Conv2d(channels, out, k, padding=k // 2, bias=draw(st.booleans())),
                   draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.GELU]))()]
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(out))
        channels = out
    head = draw(st.sampled_from(["pool", "flatten"]))
    if head == "pool":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, draw(st.integers(1, 5)))]
    else:
        layers += [nn.Flatten(), nn.Linear(channels * 6 * 6, draw(st.integers(1, 5)))]
    return nn.Sequential(*layers)


@settings(max_examples=25, deadline=None)
@given(conv_nets(), st.integers(0, 2**31 - 1))
def test_round_trip_exact_on_random_conv_nets(model, seed):
    graph = NeuralGraph.from_module(model, torch.zeros(1, model[0].in_channels, 6, 6))
    gen = torch.Generator().manual_seed(seed)
    tensors = {n: torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    node_x, edge_x = graph.gather(tensors)
    back = graph.scatter(node_x, edge_x)
    assert all(torch.equal(back[n], t) for n, t in tensors.items())
    assert int(graph.node_mask.sum() + graph.edge_mask.sum()) == sum(t.numel() for t in tensors.values())

"""Hidden-neuron permutations of networks, written out per layer type (independent of the graph code)."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.tasks import ResidualCNN


def _permute_layer(layer: nn.Module, out_perm: Optional[Tensor], in_perm: Optional[Tensor]) -> None:
    with torch.no_grad():
        w = layer.weight
        if in_perm is not None:
            channels = in_perm.numel()
            if isinstance(layer, nn.Linear) and w.shape[1] != channels:  # reads a flattened map
                w.copy_(w.view(w.shape[0], channels, -1)[:, in_perm].reshape(w.shape))
            else:
                w.copy_(w[:, in_perm])
        if out_perm is not None:
            w.copy_(w[out_perm])
            if layer.bias is not None:
                layer.bias.copy_(layer.bias[out_perm])


def _permute_norm(norm: nn.BatchNorm2d, perm: Tensor) -> None:
    with torch.no_grad():
        for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            t.copy_(t[perm])


def permute_sequential(model: nn.Sequential, perms: List[Tensor]) -> nn.Sequential:
    """A copy of a Sequential of Linear/Conv layers with hidden layer ``i`` permuted by ``perms[i]``
    (new neuron ``j`` is old neuron ``perms[i][j]``)."""
    model = copy.deepcopy(model)
    layers = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(perms) == len(layers) - 1
    for i, layer in enumerate(layers):
        _permute_layer(layer, perms[i] if i < len(perms) else None, perms[i - 1] if i > 0 else None)
    return model


def residual_perms(model: ResidualCNN, generator: torch.Generator) -> Dict[str, Tensor]:
    """Random permutations for a ResidualCNN: one for the residual stream (the stem and every
    block's second conv share it, since they are added), one per block's inner conv."""
    c = model.stem.out_channels
    perms = {"stream": torch.randperm(c, generator=generator)}
    for i in range(len(model.blocks)):
        perms[f"inner{i}"] = torch.randperm(c, generator=generator)
    return perms


def permute_residual_cnn(model: ResidualCNN, perms: Dict[str, Tensor]) -> ResidualCNN:
    model = copy.deepcopy(model)
    stream = perms["stream"]
    _permute_layer(model.stem, stream, None)
    _permute_norm(model.stem_bn, stream)
    for i, block in enumerate(model.blocks):
        inner = perms[f"inner{i}"]
        _permute_layer(block.conv1, inner, stream)
        _permute_norm(block.bn1, inner)
        _permute_layer(block.conv2, stream, inner)
        _permute_norm(block.bn2, stream)
    _permute_layer(model.head, None, stream)
    return model


def node_map_from_depth_perms(graph: NeuralGraph, depth_perms: Dict[int, Tensor]) -> Tensor:
    """``node_map[n]``: the node of the original graph that node ``n`` of the permuted network's
    graph corresponds to, given the permutation of the neurons at each hidden depth."""
    node_map = torch.arange(graph.num_nodes)
    for depth, perm in depth_perms.items():
        nodes = (graph.node_layer == depth).nonzero().squeeze(1)
        assert nodes.numel() == perm.numel(), (depth, nodes.numel(), perm.numel())
        node_map[nodes] = nodes[perm]
    return node_map


def assert_graphs_match(graph_a: NeuralGraph, params_a: Dict[str, Tensor], graph_b: NeuralGraph,
                        params_b: Dict[str, Tensor], node_map: Tensor) -> None:
    """Graph B (of the permuted network) equals graph A after relabelling node ``n`` of B as
    ``node_map[n]`` of A: same edges, same node features, same edge features, same positions."""
    n = graph_a.num_nodes
    assert graph_b.num_nodes == n and graph_b.num_edges == graph_a.num_edges
    node_a, edge_a = graph_a.gather(params_a)
    node_b, edge_b = graph_b.gather(params_b)
    assert torch.equal(node_b, node_a[node_map]), "node features differ after relabelling"
    assert torch.equal(graph_b.node_pos, graph_a.node_pos[node_map]), "positional ids not preserved"
    assert torch.equal(graph_b.node_layer, graph_a.node_layer[node_map])
    key_a = graph_a.edge_index[0] * n + graph_a.edge_index[1]
    order = torch.argsort(key_a)
    assert torch.unique(key_a).numel() == key_a.numel()
    mapped = node_map[graph_b.edge_index[0]] * n + node_map[graph_b.edge_index[1]]
    pos = torch.searchsorted(key_a[order], mapped).clamp(max=key_a.numel() - 1)
    match = order[pos]
    assert torch.equal(key_a[match], mapped), "an edge of B has no counterpart in A"
    assert torch.equal(graph_b.edge_kind, graph_a.edge_kind[match])
    assert torch.equal(edge_b, edge_a[match]), "edge features differ after relabelling"


def permute_sirens(params: Dict[str, Tensor], generator: torch.Generator) -> Dict[str, Tensor]:
    """A batch of SIRENs 2-32-32-1 (``{name: [B, ...]}``), each one's two hidden layers permuted by
    random permutations of their own."""
    out = {k: v.clone() for k, v in params.items()}
    for b in range(next(iter(params.values())).shape[0]):
        p1, p2 = torch.randperm(32, generator=generator), torch.randperm(32, generator=generator)
        out["layers.0.weight"][b] = params["layers.0.weight"][b][p1]
        out["layers.0.bias"][b] = params["layers.0.bias"][b][p1]
        out["layers.2.weight"][b] = params["layers.2.weight"][b][p2][:, p1]
        out["layers.2.bias"][b] = params["layers.2.bias"][b][p2]
        out["layers.4.weight"][b] = params["layers.4.weight"][b][:, p2]
    return out


def permute_plain_cnn(entry, generator: torch.Generator):
    """A zoo entry of a plain CNN (no skip connections) with the output channels of every conv
    layer permuted (and the next layer's input channels with them)."""
    params = dict(entry.params)
    convs = [n[:-7] for n, p in params.items() if n.endswith(".weight") and p.dim() == 4]
    linear = [n[:-7] for n, p in params.items() if n.endswith(".weight") and p.dim() == 2][-1]
    previous = None
    for layer in convs + [linear]:
        w = params[f"{layer}.weight"]
        if previous is not None:
            w = w[:, previous]
        if layer != linear:
            perm = torch.randperm(w.shape[0], generator=generator)
            w, params[f"{layer}.bias"] = w[perm], params[f"{layer}.bias"][perm]
            previous = perm
        params[f"{layer}.weight"] = w
    return entry._replace(params=params)

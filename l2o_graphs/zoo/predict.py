"""Generalization prediction: a network's test accuracy from its weights (Kendall tau on the test
networks of the zoo).

``ng-gnn`` / ``ng-t``: the graph encoder over mixed-architecture batches (each network laid out in
the zoo's largest kernel frame, 7x7), mean of all neurons' and of the output neurons' states, an
MLP and a sigmoid. ``statnn``: mean, variance and quantiles of the weights and biases of each
layer position (first to fifth conv, classifier; absent layers are zeros with a presence flag).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.nn.base import feed_forward
from l2o_graphs.tasks.architectures import build_optimizee
from l2o_graphs.nn.readout import InvariantReadout
from l2o_graphs.weightspace import NeuralGraphEncoder, mixed_inputs, tensor_statistics
from l2o_graphs.weightspace.models import STATISTICS
from l2o_graphs.weightspace.training import batch_outputs, fit_loop
from l2o_graphs.zoo.make import ZooEntry, load_zoo

PREDICTORS = ("ng-gnn", "ng-t", "statnn")
KERNEL_FRAME = (7, 7)
MAX_CONVS = 5


def kendall_tau(x: Tensor, y: Tensor) -> float:
    """Kendall's tau-b between two 1-D tensors (ties counted as in ``scipy.stats.kendalltau``)."""
    x, y = x.double().flatten(), y.double().flatten()
    dx = torch.sign(x[:, None] - x[None, :])
    dy = torch.sign(y[:, None] - y[None, :])
    upper = torch.triu(torch.ones_like(dx, dtype=torch.bool), diagonal=1)
    s = (dx * dy)[upper].sum()
    nx, ny = (dx[upper] != 0).sum(), (dy[upper] != 0).sum()
    return float(s / torch.sqrt(nx.double() * ny.double())) if nx and ny else float("nan")


class ArchitectureGraphs:
    """Neural graphs of zoo architectures, built once per architecture; with ``device``, moved
    there and precomputed (as the update network's trunk reads them)."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device
        self._cache: Dict[str, NeuralGraph] = {}

    def __call__(self, architecture: Dict) -> NeuralGraph:
        key = json.dumps(architecture, sort_keys=True)
        if key not in self._cache:
            graph = NeuralGraph.from_module(build_optimizee(architecture, 1, 28, 10))
            self._cache[key] = graph if self.device is None else graph.to(self.device).precompute()
        return self._cache[key]


def input_scales(entries: Sequence[ZooEntry]) -> Tuple[Tensor, Tensor]:
    """Root mean squares of the node features (biases, ``[1]``) and of the edge features (all
    weight entries, ``[]``) over ``entries``: what :class:`GraphAccuracyPredictor` divides its
    inputs by. A scale, not a shift, so the zeros around a small kernel in the 7x7 frame and on
    parameter-free edges stay zeros."""
    nodes = torch.cat([p.flatten() for e in entries for p in e.params.values() if p.dim() == 1])
    edges = torch.cat([p.flatten() for e in entries for p in e.params.values() if p.dim() > 1])
    return nodes.square().mean().sqrt().reshape(1), edges.square().mean().sqrt()


class GraphAccuracyPredictor(nn.Module):
    """Encoder over a mixed batch of networks -> predicted test accuracy in (0, 1).

    ``node_scale`` ``[1]`` and ``edge_scale`` ``[]`` (see :func:`input_scales`) bring the raw
    parameters, whose typical size is 0.01-0.3 by layer, to order one before the encoder's input
    projections: unscaled, they are dwarfed by the role, activation and position embeddings."""

    def __init__(self, net: str = "ng-gnn", hidden: int = 128, node_scale: Optional[Tensor] = None,
                 edge_scale: Optional[Tensor] = None, **encoder: object):
        super().__init__()
        self.encoder = NeuralGraphEncoder(net, slots=1, kernel_shape=KERNEL_FRAME, **encoder)
        self.head = InvariantReadout(self.encoder.node_dim, hidden, 1)
        self.graphs = ArchitectureGraphs()
        node_scale = torch.ones(1) if node_scale is None else node_scale
        edge_scale = torch.ones(()) if edge_scale is None else edge_scale
        self.register_buffer("node_scale", node_scale.float().clamp_min(1e-8))
        self.register_buffer("edge_scale", edge_scale.float().clamp_min(1e-8))

    def forward(self, entries: Sequence[ZooEntry]) -> Tensor:
        batch, node_x, edge_x = mixed_inputs([self.graphs(e.architecture) for e in entries],
                                             [e.params for e in entries], KERNEL_FRAME, 1)
        h, _ = self.encoder(batch, node_x / self.node_scale, edge_x / self.edge_scale)
        return torch.sigmoid(self.head(h, batch.node_role, batch)).squeeze(-1)


def layer_statistics(entry: ZooEntry) -> Tensor:
    """``[(MAX_CONVS + 1) * (2 * 7 + 1)]``: per layer position (convs, then the classifier) the
    statistics of its weight and bias and a presence flag."""
    convs = [n[:-len(".weight")] for n, p in entry.params.items() if n.endswith(".weight") and p.dim() == 4]
    linear = [n[:-len(".weight")] for n, p in entry.params.items() if n.endswith(".weight") and p.dim() == 2]
    rows = []
    for layer in convs[:MAX_CONVS] + [None] * (MAX_CONVS - len(convs[:MAX_CONVS])) + linear[-1:]:
        if layer is None:
            rows.append(torch.zeros(2 * len(STATISTICS) + 1))
            continue
        stats = [tensor_statistics({"t": entry.params[f"{layer}.{kind}"].unsqueeze(0)}, ["t"])[0]
                 for kind in ("weight", "bias")]
        rows.append(torch.cat(stats + [torch.ones(1)]))
    return torch.cat(rows)


class StatNNAccuracyPredictor(nn.Module):
    """StatNN for mixed architectures: an MLP on standardised per-layer statistics."""

    def __init__(self, train: Sequence[ZooEntry], hidden: int = 256):
        super().__init__()
        stats = torch.stack([layer_statistics(e) for e in train])
        self.register_buffer("mean", stats.mean(0))
        self.register_buffer("std", stats.std(0).clamp_min(1e-8))
        self.net = feed_forward(stats.shape[1], hidden, 1, 3)

    def forward(self, entries: Sequence[ZooEntry]) -> Tensor:
        stats = torch.stack([layer_statistics(e) for e in entries])
        return torch.sigmoid(self.net((stats - self.mean) / self.std)).squeeze(-1)


def build_predictor(name: str, train: Sequence[ZooEntry], seed: int = 0) -> nn.Module:
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    torch.manual_seed(seed)
    if name == "statnn":
        return StatNNAccuracyPredictor(train)
    node_scale, edge_scale = input_scales(train)
    return GraphAccuracyPredictor(name, node_scale=node_scale, edge_scale=edge_scale)


def predict_accuracy(model: nn.Module, entries: Sequence[ZooEntry], batch_size: int = 64) -> Tensor:
    """Predicted test accuracy ``[n]`` of each zoo entry, in eval mode (the model's mode is kept)."""
    return batch_outputs(model, len(entries), batch_size, lambda a, b: entries[a:b])


def fit_predictor(model: nn.Module, train: Sequence[ZooEntry], val: Sequence[ZooEntry], test: Sequence[ZooEntry],
                  epochs: int = 30, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                  progress: bool = True) -> Dict:
    """MSE on test accuracy; the epoch with the best validation Kendall tau is kept. Returns
    ``val_tau``, ``test_tau``, ``test_mse``, ``best_epoch``, ``history``, ``seconds`` and, per
    test checkpoint, ``test_predicted`` and ``test_true`` accuracy."""
    targets = torch.tensor([e.test_acc for e in train])

    def batch_loss(index: Tensor) -> Tensor:
        return (model([train[i] for i in index.tolist()]) - targets[index]).square().mean()

    def tau(entries: Sequence[ZooEntry]) -> float:
        return kendall_tau(predict_accuracy(model, entries), torch.tensor([e.test_acc for e in entries]))

    history, best, epoch, seconds = fit_loop(model, batch_loss, len(train), lambda: tau(val), True, epochs,
                                           batch_size, lr, 0.0, seed, progress, None)
    predicted = predict_accuracy(model, test)
    truth = torch.tensor([e.test_acc for e in test])
    return {"val_tau": best, "test_tau": kendall_tau(predicted, truth),
            "test_mse": float((predicted - truth).square().mean()), "best_epoch": epoch, "history": history,
            "seconds": seconds, "test_predicted": [round(float(v), 5) for v in predicted],
            "test_true": [round(float(v), 5) for v in truth]}


def predict_zoo(folder: Union[str, Path], models: Sequence[str] = PREDICTORS, epochs: int = 30, seed: int = 0,
                progress: bool = True) -> Dict[str, Dict]:
    """Train and test every predictor of ``models`` on the zoo in ``folder``."""
    splits = {s: load_zoo(folder, s) for s in ("train", "val", "test")}
    results: Dict[str, Dict] = {}
    for name in models:
        model = build_predictor(name, splits["train"], seed)
        results[name] = fit_predictor(model, splits["train"], splits["val"], splits["test"], epochs=epochs,
                                      seed=seed, progress=progress)
        results[name]["parameters"] = sum(p.numel() for p in model.parameters())
    results["_sizes"] = {s: len(v) for s, v in splits.items()}
    return results


__all__: List[str] = ["PREDICTORS", "kendall_tau", "ArchitectureGraphs", "input_scales",
                      "GraphAccuracyPredictor", "StatNNAccuracyPredictor", "layer_statistics",
                      "build_predictor", "fit_predictor", "predict_zoo"]

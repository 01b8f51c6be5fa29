"""INR editing: change a SIREN's weights so that it renders its image dilated (3x3 grey-level
dilation of the 28x28 rendering), as in the paper.

Editors map a batch of SIRENs ``{name: [B, *shape]}`` to a weight change of the same shape:
:class:`GraphEditor` with equivariant heads (one per edge, one per node: relabelling hidden
neurons relabels the change the same way) on NG-GNN or NG-T states, and :class:`FlatEditor`, an
MLP from all weights to all weight changes (the paper's baseline). The loss is the pixel MSE
between the edited INR's rendering and the dilated rendering of the original.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.inr.dataset import load_inr_set
from l2o_graphs.inr.siren import Siren, image_grid, siren_apply
from l2o_graphs.nn.base import feed_forward
from l2o_graphs.weightspace import NeuralGraphEncoder, ParamNormalizer, SameArchitecture
from l2o_graphs.weightspace.training import fit_regressor

EDITORS = ("ng-gnn", "ng-t", "mlp")
IMAGE_SIZE = 28


def render(params: Mapping[str, Tensor], size: int = IMAGE_SIZE) -> Tensor:
    """``[B, size, size]``: the SIRENs evaluated on the pixel grid."""
    return siren_apply(params, image_grid(size, size).to(next(iter(params.values())))).view(-1, size, size)


def dilated(images: Tensor) -> Tensor:
    """3x3 grey-level dilation (a max over each pixel's neighbourhood) of ``[B, H, W]``."""
    return nn.functional.max_pool2d(images.unsqueeze(1), 3, stride=1, padding=1).squeeze(1)


class GraphEditor(nn.Module):
    """Encoder states -> a change for every weight (edge head) and bias (node head), in units of
    each tensor's training-set standard deviation times a learned scale (starting small)."""

    def __init__(self, graph: NeuralGraph, normalizer: ParamNormalizer, net: str = "ng-gnn", **encoder: object):
        super().__init__()
        self.normalizer = normalizer
        self.inputs = SameArchitecture(graph)
        self.encoder = NeuralGraphEncoder(net, slots=graph.num_slots, kernel_shape=graph.kernel_shape, **encoder)
        k = graph.kernel_size
        self.edge_head = nn.Sequential(nn.Linear(self.encoder.edge_dim, self.encoder.edge_dim), nn.ReLU(),
                                       nn.Linear(self.encoder.edge_dim, k))
        self.node_head = feed_forward(self.encoder.node_dim, self.encoder.node_dim, graph.num_slots)
        self.scale = nn.Parameter(torch.tensor(0.01))

    def forward(self, params: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        batch, node_x, edge_x = self.inputs.inputs(self.normalizer(params))
        h, e = self.encoder(batch, node_x, edge_x)
        delta = self.inputs.outputs(self.node_head(h), self.edge_head(e.t()))
        return {n: self.scale * self.normalizer.std(n) * d for n, d in delta.items()}


class FlatEditor(nn.Module):
    """An MLP from all (standardised) weights to all weight changes (not equivariant)."""

    def __init__(self, normalizer: ParamNormalizer, shapes: Mapping[str, torch.Size], hidden: int = 256):
        super().__init__()
        self.normalizer = normalizer
        self.shapes = {n: torch.Size(s) for n, s in shapes.items()}
        size = sum(s.numel() for s in self.shapes.values())
        self.net = feed_forward(size, hidden, size, 3)
        self.scale = nn.Parameter(torch.tensor(0.01))

    def forward(self, params: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        normed = self.normalizer(params)
        flat = self.net(torch.cat([normed[n].flatten(1) for n in self.normalizer.names], 1))
        out, start = {}, 0
        for n in self.normalizer.names:
            size = self.shapes[n].numel()
            out[n] = self.scale * self.normalizer.std(n) * flat[:, start:start + size].view(-1, *self.shapes[n])
            start += size
        return out


def editing_loss(editor: nn.Module, params: Mapping[str, Tensor]) -> Tensor:
    """Mean pixel MSE between the edited INRs' renderings and the dilated original renderings."""
    with torch.no_grad():
        target = dilated(render(params))
    delta = editor(params)
    return (render({n: p + delta[n] for n, p in params.items()}) - target).square().mean()


def build_editor(name: str, train_params: Mapping[str, Tensor], seed: int = 0) -> nn.Module:
    if name not in EDITORS:
        raise ValueError(f"unknown editor {name!r}; choose one of {', '.join(EDITORS)}")
    torch.manual_seed(seed)
    normalizer = ParamNormalizer.fit(train_params)
    if name == "mlp":
        return FlatEditor(normalizer, {n: p.shape[1:] for n, p in train_params.items()})
    return GraphEditor(NeuralGraph.from_module(Siren()), normalizer, net=name)


def edit_inrs(folder: Union[str, Path], models: Sequence[str] = EDITORS, epochs: int = 10, batch_size: int = 64,
              lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Dict[str, Dict]:
    """Train every editor of ``models`` on the INR set in ``folder``; per model ``val_mse``,
    ``test_mse`` (best validation epoch), ``best_epoch``, ``history``, ``seconds``, and the MSE
    of leaving the INRs unedited (``unedited_test_mse``)."""
    splits = {s: load_inr_set(folder, s).params for s in ("train", "val", "test")}
    results = {}
    for name in models:
        editor = build_editor(name, splits["train"], seed)
        result = fit_regressor(editor, editing_loss, splits["train"], splits["val"], splits["test"], epochs=epochs,
                               batch_size=batch_size, lr=lr, seed=seed, progress=progress)
        result["parameters"] = sum(p.numel() for p in editor.parameters())
        results[name] = result
    with torch.no_grad():
        test = splits["test"]
        unedited = (render(test) - dilated(render(test))).square().mean().item() if test else float("nan")
    for r in results.values():
        r["unedited_test_mse"] = unedited
    return results

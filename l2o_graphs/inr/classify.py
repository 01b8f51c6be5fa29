"""INR classification: which digit (or garment) does a SIREN's weights encode?

Models (:func:`build_classifier`): ``ng-gnn`` and ``ng-t`` (the invariant graph predictor of
:mod:`l2o_graphs.weightspace`), and the paper's baselines ``mlp`` (flattened weights) and
``statnn`` (per-tensor statistics). All are trained the same way on the train split, the epoch
with the best validation accuracy is kept and its test accuracy reported, optionally on training
batches moved at random (:class:`SirenAugment`: the encoded images rotated and shifted, exactly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.inr.dataset import InrSet, inr_set_spec, load_inr_set
from l2o_graphs.inr.siren import Siren, SirenProbe, move_inputs
from l2o_graphs.weightspace import ENCODERS, FlatMLP, GraphPredictor, ParamNormalizer, StatNN, fit_classifier

CLASSIFIERS = ("ng-gnn", "ng-t", "mlp", "statnn")
NUM_CLASSES = 10


@dataclass(frozen=True)
class SirenAugment:
    """Training-batch augmentation for SIREN classifiers: each SIREN is replaced by one that
    renders its image rotated by an angle drawn from ``U(-rotation_degrees, rotation_degrees)``
    and shifted by ``U(-shift, shift)`` per coordinate (units of the ``[-1, 1]`` image frame),
    an exact change of the first layer (:func:`~l2o_graphs.inr.siren.move_inputs`) that keeps the
    label. The defaults are the DWSNets INR datasets' (rotation 30 degrees, translation 0.2)."""

    rotation_degrees: float = 30.0
    shift: float = 0.2

    def __post_init__(self) -> None:
        if not (self.rotation_degrees >= 0 and self.shift >= 0):
            raise ValueError(f"augmentation ranges must be >= 0, got rotation {self.rotation_degrees} degrees "
                             f"and shift {self.shift}")

    def __call__(self, params: Mapping[str, Tensor], gen: torch.Generator) -> Dict[str, Tensor]:
        size = next(iter(params.values())).shape[0]
        angle = (torch.rand(size, generator=gen) * 2 - 1) * math.radians(self.rotation_degrees)
        cos, sin = angle.cos(), angle.sin()
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shift = (torch.rand(size, 2, generator=gen) * 2 - 1) * self.shift
        return move_inputs(params, rotation, shift)


def build_classifier(name: str, train: InrSet, seed: int = 0, probes: int = 0,
                     dropout: float = 0.0, normalization: str = "tensor", values: str = "linear") -> nn.Module:
    """A fresh classifier ``name`` whose input standardisation (``normalization``, one of
    :data:`~l2o_graphs.weightspace.models.NORMALIZATIONS`; graph classifiers need ``tensor``, the
    one invariant to neuron permutations) is fitted on ``train``; graph classifiers with
    ``probes > 0`` also read every neuron's values at that many learnable input points (probe
    features), drop node-state entries with probability ``dropout`` after each graph layer
    while training, and embed parameter values as ``values`` says
    (:data:`~l2o_graphs.weightspace.encoder.VALUE_EMBEDDINGS`)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    if normalization == "element" and name in ENCODERS:
        raise ValueError(f"{name} is invariant to permutations of hidden neurons; per-element normalization "
                         "is not: use normalization='tensor'")
    torch.manual_seed(seed)
    if name == "statnn":
        return StatNN.fit(train.params, NUM_CLASSES)
    normalizer = ParamNormalizer.fit(train.params, by=normalization)
    if name == "mlp":
        return FlatMLP(normalizer, {n: p.shape[1:] for n, p in train.params.items()}, NUM_CLASSES)
    probe = SirenProbe(probes) if probes else None
    return GraphPredictor(NeuralGraph.from_module(Siren()), normalizer, NUM_CLASSES, net=name, probe=probe,
                          probe_dim=probes, dropout=dropout, values=values)


def classify_inrs(folder: Union[str, Path], models: Sequence[str] = CLASSIFIERS, epochs: int = 20,
                  batch_size: int = 64, lr: float = 1e-3, seed: int = 0, progress: bool = True,
                  probes: int = 0, dropout: float = 0.0, normalization: str = "tensor",
                  protocol: Optional[str] = None, values: str = "linear", augment: Optional[SirenAugment] = None,
                  log: Optional[Callable[[str, Dict[str, float]], None]] = None,
                  checkpoints: Optional[Union[str, Path]] = None) -> Dict[str, Dict]:
    """Train and test every classifier of ``models`` on the INR set in ``folder`` (with
    ``protocol``, only a set made by it: :func:`~l2o_graphs.inr.dataset.load_inr_set`); returns
    per model ``val_acc``, ``test_acc``, ``best_epoch``, ``history``, ``seconds`` and
    ``parameters``. ``normalization``: see :func:`build_classifier` (statistics of the train
    split). ``log(model name, epoch row)`` is called after every epoch. ``checkpoints``: a folder
    where each model's training is saved after every epoch (``MODEL.pt``) and continued from by a
    later call with the same arguments (:func:`~l2o_graphs.weightspace.training.fit_loop`); a
    checkpoint of other settings or of another INR set is refused."""
    splits = {s: load_inr_set(folder, s, protocol) for s in ("train", "val", "test")}
    data = {s: (v.params, v.label) for s, v in splits.items()}
    if checkpoints is not None:
        Path(checkpoints).mkdir(parents=True, exist_ok=True)
    shared = {"inr_set": inr_set_spec(folder).to_config(), "probes": probes, "dropout": dropout,
              "normalization": normalization, "values": values,
              "augment": None if augment is None else [augment.rotation_degrees, augment.shift]}
    results = {}
    for name in models:
        model = build_classifier(name, splits["train"], seed, probes, dropout, normalization, values)
        settings = {"model": name, **shared}
        result = fit_classifier(model, data["train"], data["val"], data["test"], epochs=epochs,
                                batch_size=batch_size, lr=lr, seed=seed, progress=progress, augment=augment,
                                log=None if log is None else (lambda row, name=name: log(name, row)),
                                checkpoint=None if checkpoints is None else Path(checkpoints) / f"{name}.pt",
                                settings=settings)
        result["parameters"] = sum(p.numel() for p in model.parameters())
        results[name] = result
    return results

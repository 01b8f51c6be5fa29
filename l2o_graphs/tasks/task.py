"""A ``Task``: an optimizee architecture, a dataset and a batch size, used functionally.

The optimizee's parameters live outside the module, in a dict, and its loss is computed with
``torch.func.functional_call``: meta-training differentiates through updates of that dict.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from l2o_graphs.data import load_images
from l2o_graphs.tasks.architectures import build_optimizee
from l2o_graphs.tasks.fewshot import fewshot_split
from l2o_graphs.types import TensorDict



@dataclass(frozen=True)
class TaskSpec:
    """What a task is, as plain data (saved in checkpoints, sampled from suites).

    ``architecture`` is a :func:`~l2o_graphs.tasks.architectures.build_optimizee` description;
    ``dataset`` one of ``l2o_graphs.data.DATASET_NAMES``; ``seed`` fixes the initialisation (and
    the few-shot draw). ``fewshot`` (``{"ways": N, "shots": K, "queries": Q}``) makes it an
    N-way K-shot task: trained on K images per class, evaluated on Q others (see
    :func:`~l2o_graphs.tasks.fewshot.fewshot_split`). ``param_scale`` ``s`` reparameterises
    every parameter (task augmentation, as in Celo): the optimizer holds ``v``, the network
    computes with ``w = s * v`` and ``v`` starts at ``w0 / s``, so the same function is trained
    with parameters and gradients on another scale (``s = 1``: the plain task)."""

    architecture: Dict[str, Any] = field(hash=False)
    dataset: str
    batch_size: int
    seed: int
    fewshot: Optional[Dict[str, int]] = field(default=None, hash=False)
    param_scale: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.param_scale) and self.param_scale > 0):
            raise ValueError(f"param_scale must be a positive finite number, got {self.param_scale!r}")

    def to_dict(self) -> Dict[str, Any]:
        out = {"architecture": dict(self.architecture), "dataset": self.dataset,
               "batch_size": self.batch_size, "seed": self.seed}
        if self.fewshot is not None:
            out["fewshot"] = dict(self.fewshot)
        if self.param_scale != 1.0:
            out["param_scale"] = self.param_scale
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskSpec":
        fewshot = {k: int(v) for k, v in d["fewshot"].items()} if d.get("fewshot") else None
        return cls(dict(d["architecture"]), str(d["dataset"]), int(d["batch_size"]), int(d["seed"]), fewshot,
                   float(d.get("param_scale", 1.0)))


@functools.lru_cache(maxsize=8)
def _dataset(name: str, split: str, device: str) -> Tuple[Tensor, Tensor]:
    images, labels = load_images(name, split)
    return images.to(device), labels.to(device)


class Task:
    """One optimizee on one dataset.

    Args:
        spec: the task.
        device: where data, parameters and buffers live.
        dtype: of images and parameters (float64 for finite-difference checks).
    """

    def __init__(self, spec: TaskSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.spec = spec
        self.device = torch.device(device)
        self.train_x, self.train_y = _dataset(spec.dataset, "train", str(self.device))
        self.test_x, self.test_y = _dataset(spec.dataset, "test", str(self.device))
        num_classes = int(self.train_y.max()) + 1
        if spec.fewshot is not None:
            f = spec.fewshot
            self.train_x, self.train_y, self.test_x, self.test_y = fewshot_split(
                self.train_x, self.train_y, f["ways"], f["shots"], f["queries"], spec.seed)
            num_classes = f["ways"]
        self.train_x, self.test_x = self.train_x.to(dtype), self.test_x.to(dtype)
        channels, size = self.train_x.shape[1], self.train_x.shape[-1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            self.module: nn.Module = build_optimizee(spec.architecture, channels, size, num_classes).to(self.device, dtype)
        self.module.train()

    def init_params(self) -> Tuple[TensorDict, TensorDict]:
        """Fresh ``(params, buffers)`` from the spec's seed (the same every call); parameters
        divided by ``spec.param_scale``."""
        scale = self.spec.param_scale
        params = {n: p.detach() / scale if scale != 1.0 else p.detach().clone()
                  for n, p in self.module.named_parameters()}
        buffers = {n: b.detach().clone() for n, b in self.module.named_buffers()}
        return params, buffers

    def network_params(self, params: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """The parameters the network computes with: ``params`` times ``spec.param_scale``."""
        scale = self.spec.param_scale
        return params if scale == 1.0 else {n: p * scale for n, p in params.items()}

    def loss(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Mean cross-entropy of the optimizee with ``params`` on ``(x, y)``; BatchNorm running
        statistics in ``buffers`` are updated in place, as in ``module.train()``."""
        logits = functional_call(self.module, {**self.network_params(params), **buffers}, (x,))
        return nn.functional.cross_entropy(logits, y)

    def batch(self, generator: torch.Generator) -> Tuple[Tensor, Tensor]:
        """A training batch drawn uniformly (with replacement across batches) with ``generator``
        (a CPU generator, so the sequence is the same on every device)."""
        idx = torch.randint(len(self.train_y), (self.spec.batch_size,), generator=generator).to(self.device)
        return self.train_x[idx], self.train_y[idx]

    def evaluate(self, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], split: str = "test",
                 limit: Optional[int] = None, chunk: int = 2048) -> Tuple[float, float]:
        """``(mean loss, accuracy)`` over a split, or its first ``limit`` images (BatchNorm in
        eval mode), of the optimizee with ``params`` and ``buffers``."""
        x, y = (self.test_x, self.test_y) if split == "test" else (self.train_x, self.train_y)
        state = {**self.network_params(params), **buffers}
        return evaluate(self.module, x, y, nn.functional.cross_entropy, limit, chunk,
                        forward=lambda inputs: functional_call(self.module, state, (inputs,)))


@torch.no_grad()
def evaluate(model: nn.Module, inputs: Tensor, targets: Tensor,
             loss: Callable[[Tensor, Tensor], Tensor] = nn.functional.cross_entropy, limit: Optional[int] = None,
             chunk: int = 2048, forward: Optional[Callable[[Tensor], Tensor]] = None) -> Tuple[float, Optional[float]]:
    """``(mean loss, accuracy)`` of ``model`` over ``inputs``/``targets`` (their first ``limit``
    examples), in chunks, in eval mode (the model's mode is restored afterwards).

    ``loss(outputs, targets)`` is a batch's mean loss; accuracy is None unless the outputs are
    ``[B, C]`` scores and the targets ``[B]`` class indices. ``forward`` replaces ``model(x)``
    (a functional call with other parameters, say)."""
    inputs, targets = inputs[:limit], targets[:limit]
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    try:
        total, correct, scored = 0.0, 0, True
        for a in range(0, len(targets), chunk):
            x, y = inputs[a:a + chunk], targets[a:a + chunk]
            outputs = forward(x)
            total += float(loss(outputs, y)) * len(y)
            scored = scored and outputs.dim() == 2 and y.dim() == 1 and not y.is_floating_point()
            if scored:
                correct += int((outputs.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return total / len(targets), (correct / len(targets) if scored else None)

"""Task suites: families of tasks to sample from, named or read from YAML.

A suite is plain data::

    name: mixed-small
    datasets: [mnist, fashion_mnist, digits]
    batch_sizes: [32, 64, 128]
    architectures:
      - {kind: mlp, hidden_layers: [1, 4], width: [16, 256], activations: [relu, gelu, tanh, silu]}
      - {kind: cnn, conv_layers: [2, 5], channels: [8, 64], kernels: [3, 5], heads: [pool, flatten],
         activations: [relu, gelu, tanh, silu], residual: [false, true], batchnorm: [false, true]}
      - {kind: paper-cnn, widths: [1]}

An optional ``fewshot: {ways: [5], shots: [1, 5], queries: [15]}`` makes every task an
N-way K-shot task drawn with learn2learn (:mod:`l2o_graphs.tasks.fewshot`). An optional
``param_scales: [low, high]`` augments every task with a parameter scale drawn log-uniformly from
that range (``TaskSpec.param_scale``: the network computes with ``s * v`` from ``v = w0 / s``).

``[low, high]`` pairs are inclusive integer ranges (widths and channels drawn log-uniformly, one
per layer); other lists are choices. :func:`parse_suite` checks every field and names the bad
one; :meth:`Suite.sample` draws a :class:`TaskSpec` with a ``torch.Generator``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import yaml

from l2o_graphs.data import DATASET_NAMES
from l2o_graphs.tasks.architectures import ACTIVATION_MODULES
from l2o_graphs.tasks.task import TaskSpec


def log_uniform(low: float, high: float, generator: torch.Generator) -> float:
    """A number drawn log-uniformly from ``[low, high]`` with ``generator`` (one uniform draw)."""
    u = float(torch.rand((), generator=generator))
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


class SuiteError(ValueError):
    """A suite description with a missing, unknown or malformed field."""


_ARCH_FIELDS = {
    "mlp": {"hidden_layers": "range", "width": "range", "activations": ("choice", tuple(ACTIVATION_MODULES))},
    "cnn": {"conv_layers": "range", "channels": "range", "kernels": ("choice", (1, 3, 5, 7)),
            "heads": ("choice", ("pool", "flatten")), "activations": ("choice", tuple(ACTIVATION_MODULES)),
            "residual": ("choice", (False, True)), "batchnorm": ("choice", (False, True))},
    "paper-cnn": {"widths": ("choice", (1, 2, 3, 4))},
}


@dataclass(frozen=True)
class Suite:
    """A validated suite (see the module docstring)."""

    name: str
    datasets: Tuple[str, ...]
    batch_sizes: Tuple[int, ...]
    architectures: Tuple[Dict[str, Any], ...]
    fewshot: Optional[Dict[str, Tuple[int, ...]]] = None
    param_scales: Optional[Tuple[float, float]] = None

    def sample(self, generator: torch.Generator) -> TaskSpec:
        """One task: architecture family, its hyper-parameters, dataset, batch size, seed."""
        def pick(options: Sequence[Any]) -> Any:
            return options[int(torch.randint(len(options), (1,), generator=generator))]

        def integer(bounds: Sequence[int], log: bool = False) -> int:
            low, high = bounds
            if not log:
                return int(torch.randint(low, high + 1, (1,), generator=generator))
            u = float(torch.rand((), generator=generator))
            return min(high, int(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low)))))

        family = pick(self.architectures)
        kind = family["kind"]
        if kind == "mlp":
            hidden = [integer(family["width"], log=True) for _ in range(integer(family["hidden_layers"]))]
            arch: Dict[str, Any] = {"kind": "mlp", "hidden": hidden, "activation": pick(family["activations"])}
        elif kind == "cnn":
            channels = [integer(family["channels"], log=True) for _ in range(integer(family["conv_layers"]))]
            arch = {"kind": "cnn", "channels": channels, "kernel": pick(family["kernels"]),
                    "head": pick(family["heads"]), "activation": pick(family["activations"]),
                    "residual": pick(family["residual"]), "batchnorm": pick(family["batchnorm"])}
        else:
            arch = {"kind": "paper-cnn", "width": pick(family["widths"])}
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=generator))
        fewshot = None if self.fewshot is None else {k: pick(v) for k, v in self.fewshot.items()}
        scale = 1.0 if self.param_scales is None else log_uniform(*self.param_scales, generator)
        return TaskSpec(arch, pick(self.datasets), pick(self.batch_sizes), seed, fewshot, scale)


def _fail(suite: str, where: str, what: str) -> SuiteError:
    return SuiteError(f"suite {suite!r}: field {where!r}: {what}")


def _choices(suite: str, where: str, value: Any, allowed: Sequence[Any]) -> Tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(suite, where, f"expected a non-empty list, got {value!r}")
    bad = [v for v in value if v not in allowed or type(v) is not type(allowed[0])]
    if bad:
        raise _fail(suite, where, f"{bad[0]!r} is not one of {list(allowed)}")
    return tuple(value)


def _range(suite: str, where: str, value: Any) -> Tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value)
            and 1 <= value[0] <= value[1]):
        raise _fail(suite, where, f"expected [low, high], two integers with 1 <= low <= high, got {value!r}")
    return value[0], value[1]


def parse_suite(data: Mapping[str, Any]) -> Suite:
    """Validate a suite description (a dict as read from YAML); raises :class:`SuiteError`."""
    if not isinstance(data, Mapping):
        raise SuiteError(f"a suite is a mapping of fields, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError("suite: field 'name': expected a non-empty string")
    unknown = set(data) - {"name", "datasets", "batch_sizes", "architectures", "fewshot", "param_scales"}
    if unknown:
        raise _fail(name, sorted(unknown)[0], "unknown field (expected name, datasets, batch_sizes, "
                                              "architectures, fewshot, param_scales)")
    for required in ("datasets", "batch_sizes", "architectures"):
        if required not in data:
            raise _fail(name, required, "missing")
    datasets = _choices(name, "datasets", data["datasets"], DATASET_NAMES)
    sizes = data["batch_sizes"]
    if not (isinstance(sizes, list) and sizes and all(type(s) is int and s > 0 for s in sizes)):
        raise _fail(name, "batch_sizes", f"expected a non-empty list of positive integers, got {sizes!r}")
    archs = data["architectures"]
    if not isinstance(archs, list) or not archs:
        raise _fail(name, "architectures", f"expected a non-empty list, got {archs!r}")
    parsed: List[Dict[str, Any]] = []
    for i, arch in enumerate(archs):
        where = f"architectures[{i}]"
        if not isinstance(arch, Mapping) or arch.get("kind") not in _ARCH_FIELDS:
            raise _fail(name, f"{where}.kind", f"expected one of {list(_ARCH_FIELDS)}, got "
                                               f"{arch.get('kind') if isinstance(arch, Mapping) else arch!r}")
        fields = _ARCH_FIELDS[arch["kind"]]
        extra = set(arch) - set(fields) - {"kind"}
        if extra:
            raise _fail(name, f"{where}.{sorted(extra)[0]}", f"unknown field for kind {arch['kind']!r} "
                                                            f"(expected {', '.join(fields)})")
        out: Dict[str, Any] = {"kind": arch["kind"]}
        for key, rule in fields.items():
            if key not in arch:
                raise _fail(name, f"{where}.{key}", "missing")
            out[key] = (_range(name, f"{where}.{key}", arch[key]) if rule == "range"
                        else _choices(name, f"{where}.{key}", arch[key], rule[1]))
        parsed.append(out)
    fewshot = None
    if "fewshot" in data:
        f = data["fewshot"]
        if not isinstance(f, Mapping) or set(f) != {"ways", "shots", "queries"}:
            raise _fail(name, "fewshot", f"expected a mapping with ways, shots and queries, got {f!r}")
        fewshot = {key: _choices(name, f"fewshot.{key}", f[key], tuple(range(1, 1001))) for key in f}
        if max(fewshot["ways"]) > 10:
            raise _fail(name, "fewshot.ways", "the datasets have 10 classes")
    scales = data.get("param_scales")
    if scales is not None:
        if not (isinstance(scales, list) and len(scales) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scales)
                and 0 < scales[0] <= scales[1]):
            raise _fail(name, "param_scales", f"expected [low, high], two numbers with 0 < low <= high, got {scales!r}")
        scales = (float(scales[0]), float(scales[1]))
    return Suite(name, datasets, tuple(sizes), tuple(parsed), fewshot, scales)


_ACTS = ["relu", "gelu", "tanh", "silu"]
# the two families of "small", shared by "medium"
_SMALL_MLP = {"kind": "mlp", "hidden_layers": [1, 3], "width": [16, 128], "activations": _ACTS}
_SMALL_CNN = {"kind": "cnn", "conv_layers": [2, 4], "channels": [4, 24], "kernels": [3, 5], "heads": ["pool", "flatten"],
              "activations": _ACTS, "residual": [False, True], "batchnorm": [False, True]}
BUILTIN_SUITES: Dict[str, Dict[str, Any]] = {
    # the paper's meta-training task (ANCHORS.md)
    "fmnist-cnn": {"name": "fmnist-cnn", "datasets": ["fashion_mnist"], "batch_sizes": [128],
                   "architectures": [{"kind": "paper-cnn", "widths": [1]}]},
    "mixed-small": {
        "name": "mixed-small", "datasets": ["mnist", "fashion_mnist", "digits"], "batch_sizes": [32, 64, 128],
        "architectures": [
            {"kind": "mlp", "hidden_layers": [1, 4], "width": [16, 256], "activations": _ACTS},
            {"kind": "cnn", "conv_layers": [2, 5], "channels": [8, 64], "kernels": [3, 5],
             "heads": ["pool", "flatten"], "activations": _ACTS, "residual": [False, True],
             "batchnorm": [False, True]}]},
    # N-way K-shot tasks drawn with learn2learn
    "fewshot": {
        "name": "fewshot", "datasets": ["mnist", "fashion_mnist"], "batch_sizes": [25],
        "fewshot": {"ways": [5], "shots": [5, 10], "queries": [15]},
        "architectures": [
            {"kind": "mlp", "hidden_layers": [1, 2], "width": [16, 64], "activations": _ACTS},
            {"kind": "cnn", "conv_layers": [2, 3], "channels": [8, 32], "kernels": [3], "heads": ["pool"],
             "activations": _ACTS, "residual": [False], "batchnorm": [False]}]},
    # tiny tasks in the spirit of Celo's meta-training set: small MLPs and CNNs on 8x8 images, so
    # that PES runs thousands of outer steps in hours on a CPU
    "tiny": {
        "name": "tiny", "datasets": ["digits", "mnist-8x8", "fashion_mnist-8x8"], "batch_sizes": [32, 64, 128],
        "architectures": [
            {"kind": "mlp", "hidden_layers": [1, 3], "width": [16, 64], "activations": _ACTS},
            {"kind": "cnn", "conv_layers": [2, 3], "channels": [4, 16], "kernels": [3], "heads": ["pool", "flatten"],
             "activations": _ACTS, "residual": [False, True], "batchnorm": [False, True]}]},
    # small networks on the 28x28 sets: the scale of the held-out networks at a fraction of their
    # cost (a PES step costs about the same as on "tiny": the update network's overhead dominates)
    "small": {
        "name": "small", "datasets": ["mnist", "fashion_mnist"], "batch_sizes": [32, 64, 128],
        "architectures": [_SMALL_MLP, _SMALL_CNN]},
    # "small" with MLPs of the widths people train (2-4 hidden layers of 64-384) as a third of its
    # tasks: on "small" alone every run drifted to steps that its small networks reward and wider
    # ones do not (README, "What was tried")
    "medium": {
        "name": "medium", "datasets": ["mnist", "fashion_mnist"], "batch_sizes": [32, 64, 128],
        "architectures": [_SMALL_MLP, {"kind": "mlp", "hidden_layers": [2, 4], "width": [64, 384], "activations": _ACTS},
                          _SMALL_CNN]},
    # a fixed tiny suite for tests and smoke runs: small MLPs on the 8x8 digits
    "digits-mlp": {"name": "digits-mlp", "datasets": ["digits"], "batch_sizes": [64],
                   "architectures": [{"kind": "mlp", "hidden_layers": [1, 1], "width": [16, 16],
                                      "activations": ["relu"]}]},
}


def load_suite(name_or_path: Union[str, Path]) -> Suite:
    """A built-in suite by name (``BUILTIN_SUITES``) or a YAML file describing one."""
    if str(name_or_path) in BUILTIN_SUITES:
        return parse_suite(BUILTIN_SUITES[str(name_or_path)])
    path = Path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"no built-in suite {str(name_or_path)!r} (built-in: {', '.join(BUILTIN_SUITES)}) "
                         f"and no such YAML file")
    with path.open() as f:
        data = yaml.safe_load(f)
    if isinstance(data, Mapping) and "suite" in data:  # a meta-training config that embeds its suite
        data = data["suite"]
    return parse_suite(data)

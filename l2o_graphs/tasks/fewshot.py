"""N-way K-shot classification tasks sampled with learn2learn's ``MetaDataset``/``TaskDataset``."""
from __future__ import annotations

import random
from typing import Tuple

import torch
from torch import Tensor


def import_learn2learn():
    """The ``learn2learn`` module, or an ``ImportError`` saying how to install it."""
    try:
        import learn2learn
    except ImportError as err:  # an optional dependency (extra "learn2learn")
        raise ImportError(
            f"few-shot suites need learn2learn ({err}). `make setup` installs it (built from its sdist "
            f"with Cython 3, see scripts/setup_env.sh); elsewhere: pip install learn2learn gym qpth") from err
    return learn2learn


def fewshot_split(images: Tensor, labels: Tensor, ways: int, shots: int, queries: int, seed: int
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One ``ways``-way task: ``shots`` training and ``queries`` held-out images per class, drawn
    from ``(images, labels)`` with learn2learn's task transforms; labels renumbered ``0..ways-1``.

    Returns ``(train_x [ways*shots, ...], train_y, test_x [ways*queries, ...], test_y)``; the
    same ``seed`` gives the same task (learn2learn draws with Python's ``random``, which is
    seeded here and restored afterwards)."""
    l2l = import_learn2learn()
    from learn2learn.data.transforms import KShots, LoadData, NWays, RemapLabels

    classes = labels.unique().tolist()
    if ways > len(classes):
        raise ValueError(f"{ways}-way tasks need {ways} classes; the dataset has {len(classes)}")
    by_label = {int(c): torch.nonzero(labels == c).squeeze(1).tolist() for c in classes}
    meta = l2l.data.MetaDataset(torch.utils.data.TensorDataset(images, labels), labels_to_indices=by_label)
    transforms = [NWays(meta, ways), KShots(meta, shots + queries), LoadData(meta), RemapLabels(meta)]
    tasks = l2l.data.TaskDataset(meta, task_transforms=transforms)
    saved = random.getstate()
    try:
        random.seed(seed)
        x, y = tasks.sample()
    finally:
        random.setstate(saved)
    per_class = [torch.nonzero(y == c).squeeze(1) for c in range(ways)]
    train = torch.cat([idx[:shots] for idx in per_class])
    test = torch.cat([idx[shots:] for idx in per_class])
    return x[train], y[train], x[test], y[test]

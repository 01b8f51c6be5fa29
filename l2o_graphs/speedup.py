"""Speedup over tuned Adam, in learned_optimization's convention.

Take the baseline's seed-averaged loss curve for every learning rate of its grid, the minimum over
learning rates at each evaluation step, and its running minimum (the best any tuned run had reached
by then); the speedup of a learned optimizer is the first step at which that curve reaches the
learned optimizer's final loss, divided by the learned optimizer's number of steps. Below 1: tuned
Adam gets there sooner; None: tuned Adam never gets there within the horizon (a speedup above 1).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch


def tuned_curve(curves: Mapping[str, Sequence[Sequence[float]]]) -> torch.Tensor:
    """``[T]``: running minimum over steps of the minimum over settings of the seed-mean curves.

    ``curves[setting]`` holds one curve per seed, all of length ``T`` (a setting whose curves hold
    NaN or inf, a diverged run, counts as never reaching anything)."""
    means = []
    for runs in curves.values():
        mean = torch.tensor([list(run) for run in runs], dtype=torch.float64).mean(0)
        means.append(torch.where(torch.isfinite(mean), mean, torch.full_like(mean, float("inf"))))
    best = torch.stack(means).amin(0)
    return torch.cummin(best, 0).values


def speedup(curves: Mapping[str, Sequence[Sequence[float]]], steps: Sequence[int], target: float) -> Optional[float]:
    """The speedup of an optimizer that ended at ``target`` after ``steps[-1]`` steps over the
    baseline's ``curves`` (see :func:`tuned_curve`), evaluated at ``steps``; None when the tuned
    baseline never reaches ``target``."""
    reached = torch.nonzero(tuned_curve(curves) <= target)
    if len(reached) == 0:
        return None
    return steps[int(reached[0])] / steps[-1]

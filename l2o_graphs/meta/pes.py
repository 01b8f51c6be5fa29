"""Persistent evolution strategies (PES, Vicol et al., ICML 2021): meta-gradients from forward
unrolls only.

An antithetic pair of particles runs the same inner training twice, one with the meta-parameters
``theta + eps``, the other with ``theta - eps`` (``eps ~ N(0, sigma^2 I)``, fresh every
truncation). Each pair keeps the sum ``xi`` of the perturbations it has received since its inner
training started; the estimate of the gradient of a truncation's loss is

    g = sum_i xi_i (L+_i - L-_i) / (2 N sigma^2)

over ``N`` pairs. Because ``xi`` covers every truncation since the start, ``g`` is an unbiased
estimate of the gradient through the whole unroll (of the Gaussian-smoothed loss), where truncated
backprop only sees the current truncation. These are pure functions over flat tensors; the
meta-trainer (:mod:`l2o_graphs.meta.trainer`) owns the particles.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import Tensor, nn


def antithetic_noise(num_pairs: int, num_params: int, sigma: float, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """``[num_pairs, num_params]`` Gaussian perturbations of standard deviation ``sigma``, drawn on
    the CPU with ``generator`` (so that every process of a distributed run draws the same)."""
    return torch.randn(num_pairs, num_params, generator=generator, dtype=dtype) * sigma


def pes_gradient(loss_plus: Tensor, loss_minus: Tensor, accumulated: Tensor, sigma: float,
                 num_pairs: Optional[int] = None) -> Tensor:
    """The PES estimate ``[P]`` from ``N`` antithetic pairs.

    Args:
        loss_plus, loss_minus: ``[N]`` truncation losses of the ``+`` and ``-`` particles.
        accumulated: ``[N, P]`` every pair's perturbations summed since its inner training
            started, this truncation's included (for the ``+`` particle; the ``-`` one has the
            negative).
        sigma: the perturbations' standard deviation.
        num_pairs: the normaliser ``N`` when the rows are part of a larger set split across
            processes (their estimates are then summed); default ``len(loss_plus)``.
    """
    n = len(loss_plus) if num_pairs is None else num_pairs
    diff = (loss_plus - loss_minus).to(accumulated.dtype)
    return (diff @ accumulated) / (2 * n * sigma ** 2)


def flat_parameters(params: Iterable[Tensor]) -> Tensor:
    """The tensors ``params`` (a net's ``parameters()``, or the meta-parameters trained) as one
    detached ``[P]`` vector, in order."""
    return nn.utils.parameters_to_vector(list(params)).detach()


def set_flat_parameters(params: Iterable[Tensor], flat: Tensor) -> None:
    """Write ``flat`` (as from :func:`flat_parameters`) into the tensors ``params``, in place."""
    with torch.no_grad():
        nn.utils.vector_to_parameters(flat, list(params))

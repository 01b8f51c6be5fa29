"""Per-parameter optimizer-state features: pure functions over dicts of tensors.

State per parameter tensor ``p`` (float32 for half-precision and float32 parameters, float64
for float64 ones: see :func:`compute_dtype`):

* ``momenta``: ``[*p.shape, 5]``, exponential moving averages of the gradient at ``BETAS``;
* ``second_moment``: ``[*p.shape]``, moving average of the squared gradient at ``BETA2``.

Features per element (``NUM_FEATURES`` of them, last dim), all scale-free so that a layer's
scale does not leak into the learned rule: 0-6 are divided by a per-tensor RMS, 7-12 are
per-element ratios to the second moment (clipped to +-``RATIO_CLIP``):

0. parameter / RMS(parameter)
1. gradient / RMS(gradient)
2-6. momentum_b / RMS(momentum_b) for each b in ``BETAS``
7. gradient / sqrt(second moment), bias-corrected (Adam's normalised gradient)
8-12. momentum_b / sqrt(second moment), bias-corrected (Adam-style normalised momenta)

plus ``NUM_TIME_FEATURES`` global features ``tanh(step / tau)`` for ``tau`` in ``TIMESCALES``.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Tuple

import torch
from torch import Tensor

from l2o_graphs.chunks import chunk_elements, row_ranges
from l2o_graphs.types import TensorDict

BETAS = (0.5, 0.9, 0.99, 0.999, 0.9999)
BETA2 = 0.999
TIMESCALES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
NUM_FEATURES = 3 + 2 * len(BETAS)
NUM_TIME_FEATURES = len(TIMESCALES)
EPS = 1e-8
RATIO_CLIP = 10.0



def compute_dtype(t: Tensor) -> torch.dtype:
    """float32, or float64 for float64 tensors (finite-difference checks of meta-gradients)."""
    return torch.promote_types(t.dtype, torch.float32)


def init_moments(params: Mapping[str, Tensor]) -> Tuple[TensorDict, TensorDict]:
    """Zero ``momenta [*shape, 5]`` and ``second_moment [*shape]`` (``compute_dtype``).

    The momenta are stored beta-first (``[5, *shape]`` memory behind the ``[*shape, 5]`` view):
    each moving average is then a contiguous plane, which :func:`element_features` reads and
    :func:`accumulate` keeps (elementwise results follow their input's layout)."""
    momenta = {n: torch.zeros(len(BETAS), *p.shape, dtype=compute_dtype(p), device=p.device).movedim(0, -1)
               for n, p in params.items()}
    second = {n: torch.zeros(p.shape, dtype=compute_dtype(p), device=p.device) for n, p in params.items()}
    return momenta, second


def accumulate(grad: Tensor, momenta: Tensor, second: Tensor) -> Tuple[Tensor, Tensor]:
    """One step of the moving averages (pure): returns new ``momenta`` and ``second``.

    Finite for any finite gradient: gradient elements enter the momenta clipped to half the
    dtype's largest value and the second moment clipped to the square root of a quarter of it
    (about 9e18 in float32), so neither an average nor a square can overflow; gradients below
    those bounds are used as they are."""
    g = grad.to(momenta.dtype)
    largest = torch.finfo(momenta.dtype).max
    weights = 1 - torch.tensor(BETAS, dtype=momenta.dtype, device=momenta.device)
    new_momenta = torch.lerp(momenta, g.clamp(-largest / 2, largest / 2).unsqueeze(-1).expand_as(momenta), weights)
    root = math.sqrt(largest / 4)
    g_root = g.clamp(-root, root)
    new_second = torch.lerp(second, g_root * g_root, 1 - BETA2)
    return new_momenta, new_second


def inv_rms(x: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """``1 / RMS(x)`` over ``dims``, kept as broadcastable dims (a per-tensor statistic)."""
    count = 1
    for d in dims:
        count *= x.shape[d]
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    return torch.rsqrt(norm * norm / max(count, 1) + EPS * EPS)


def element_features(param: Tensor, grad: Tensor, momenta: Tensor, second: Tensor, step: int,
                     out: Optional[Tensor] = None) -> Tensor:
    """``[*param.shape, NUM_FEATURES]`` features of one tensor after ``step`` (>= 1) updates of
    its moments (see the module docstring).

    ``param``, ``grad`` and ``second`` share a shape ``S`` (any view of the tensor: statistics run
    over all elements), ``momenta`` is ``[*S, 5]``. With ``out`` (``[*S, NUM_FEATURES]``, for
    example a view into a graph's edge tensor) the features are written there, in chunks along
    the first dimension sized for the device (:mod:`l2o_graphs.chunks`), and it is returned: the
    path without autograd. Without ``out`` they are built as a new tensor by concatenation, a
    handful of autograd nodes instead of one slice write per feature and chunk."""
    if param.dim() == 0:  # a scalar parameter: a tensor of one element
        flat = element_features(param.reshape(1), grad.reshape(1), momenta.reshape(1, -1), second.reshape(1), step,
                                out=None if out is None else out.view(1, NUM_FEATURES))
        return flat.view(NUM_FEATURES)
    dims = tuple(range(param.dim()))
    p, g = param.to(compute_dtype(param)), grad.to(compute_dtype(param))
    scale_p, scale_g, scale_m = inv_rms(p, dims), inv_rms(g, dims), inv_rms(momenta, dims)
    v_correction = 1 / (1 - BETA2 ** step)
    m_correction = torch.tensor([1 / (1 - b ** step) for b in BETAS], device=p.device)
    if out is None:
        # Adam-style ratios with bias-corrected moments (step >= 1), as in the chunked path below
        inv_sqrt_v = torch.rsqrt(second * v_correction + EPS * EPS).unsqueeze(-1)
        ratios = torch.cat([g.unsqueeze(-1) * inv_sqrt_v, momenta * inv_sqrt_v * m_correction], -1)
        return torch.cat([(p * scale_p).unsqueeze(-1), (g * scale_g).unsqueeze(-1), momenta * scale_m,
                          ratios.clamp(-RATIO_CLIP, RATIO_CLIP)], -1)
    row_elements = max(1, math.prod(p.shape[1:]))
    for a, b in row_ranges(p.shape[0], chunk_elements(p.device) // (2 * row_elements)):
        o, pc, gc, mc, vc = (t[a:b] for t in (out, p, g, momenta, second))
        o[..., 0] = pc * scale_p
        o[..., 1] = gc * scale_g
        o[..., 2:7] = mc * scale_m
        inv_sqrt_v = torch.rsqrt(vc * v_correction + EPS * EPS)
        o[..., 7] = gc * inv_sqrt_v
        o[..., 8:] = mc * inv_sqrt_v.unsqueeze(-1)
        o[..., 8:] *= m_correction
        o[..., 7:].clamp_(-RATIO_CLIP, RATIO_CLIP)
    return out


def adam_direction(momenta: Tensor, second: Tensor, step: int) -> Tensor:
    """Adam's normalised step ``m_hat / (sqrt(v_hat) + EPS)`` from the beta-0.9 momentum and
    the second moment after ``step`` (>= 1) updates (bias-corrected, not clipped)."""
    m_hat = momenta[..., BETAS.index(0.9)] / (1 - 0.9 ** step)
    v_hat = second / (1 - BETA2 ** step)
    return m_hat / (v_hat.sqrt() + EPS)


def time_features(step: int, device: torch.device = None) -> Tensor:
    """``[NUM_TIME_FEATURES]``: ``tanh(step / tau)`` for each timescale."""
    return torch.tanh(step / torch.tensor(TIMESCALES, device=device))

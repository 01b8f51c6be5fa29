"""Per-parameter optimizer-state features: pure functions over dicts of tensors.

State per parameter tensor ``p`` (float32, whatever ``p``'s dtype):

* ``momenta``: ``[*p.shape, 5]``, exponential moving averages of the gradient at ``BETAS``;
* ``second_moment``: ``[*p.shape]``, moving average of the squared gradient at ``BETA2``.

Features per element (``NUM_FEATURES`` of them, last dim), each normalised per tensor so that a
layer's scale does not leak into the learned rule:

0. parameter / RMS(parameter)
1. gradient / RMS(gradient)
2-6. momentum_b / RMS(momentum_b) for each b in ``BETAS``
7. gradient / sqrt(second moment), bias-corrected (Adam's normalised gradient)
8-12. momentum_b / sqrt(second moment), bias-corrected (Adam-style normalised momenta)

plus ``NUM_TIME_FEATURES`` global features ``tanh(step / tau)`` for ``tau`` in ``TIMESCALES``.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import torch
from torch import Tensor

BETAS = (0.5, 0.9, 0.99, 0.999, 0.9999)
BETA2 = 0.999
TIMESCALES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
NUM_FEATURES = 3 + 2 * len(BETAS)
NUM_TIME_FEATURES = len(TIMESCALES)
EPS = 1e-8
RATIO_CLIP = 10.0

TensorDict = Dict[str, Tensor]


def init_moments(params: Mapping[str, Tensor]) -> Tuple[TensorDict, TensorDict]:
    """Zero ``momenta [*shape, 5]`` and ``second_moment [*shape]`` in float32."""
    momenta = {n: torch.zeros(*p.shape, len(BETAS), dtype=torch.float32, device=p.device) for n, p in params.items()}
    second = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
    return momenta, second


def accumulate(grad: Tensor, momenta: Tensor, second: Tensor) -> Tuple[Tensor, Tensor]:
    """One step of the moving averages (pure): returns new ``momenta`` and ``second``."""
    betas = torch.tensor(BETAS, dtype=momenta.dtype, device=momenta.device)
    g = grad.float()
    new_momenta = momenta * betas + g.unsqueeze(-1) * (1 - betas)
    new_second = second * BETA2 + g.square() * (1 - BETA2)
    return new_momenta, new_second


def _rms_normalise(x: Tensor, dims: Tuple[int, ...]) -> Tensor:
    """``x / RMS(x)`` over ``dims`` (a per-tensor statistic; zero tensors stay zero)."""
    return x * torch.rsqrt(x.square().mean(dim=dims, keepdim=True) + EPS * EPS)


def element_features(param: Tensor, grad: Tensor, momenta: Tensor, second: Tensor, step: int) -> Tensor:
    """``[*param.shape, NUM_FEATURES]`` features of one tensor after ``step`` (>= 1) updates of
    its moments."""
    elem_dims = tuple(range(param.dim()))
    p, g = param.float(), grad.float()
    # bias-corrected second moment (step >= 1)
    v_hat = second / (1 - BETA2 ** step)
    inv_rms = torch.rsqrt(v_hat + EPS * EPS).unsqueeze(-1)
    betas = torch.tensor(BETAS, dtype=momenta.dtype, device=momenta.device)
    m_hat = momenta / (1 - betas ** step)
    ratio = torch.cat([g.unsqueeze(-1), m_hat], -1) * inv_rms
    return torch.cat([
        _rms_normalise(p, elem_dims).unsqueeze(-1),
        _rms_normalise(g, elem_dims).unsqueeze(-1),
        _rms_normalise(momenta, elem_dims),
        ratio.clamp(-RATIO_CLIP, RATIO_CLIP),
    ], -1)


def time_features(step: int, device: torch.device = None) -> Tensor:
    """``[NUM_TIME_FEATURES]``: ``tanh(step / tau)`` for each timescale."""
    return torch.tanh(step / torch.tensor(TIMESCALES, device=device))

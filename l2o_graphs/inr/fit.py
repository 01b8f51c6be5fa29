"""Fitting many SIRENs at once: one image each, parameters stacked along a batch dimension.

The loss is the sum over the batch of each INR's own mean squared error, so every INR receives
exactly the gradient it would get alone, and Adam acts element by element: a batch of ``B``
fits is ``B`` independent fits computed with batched matrix products (``torch.baddbmm``). The
batch is fitted in chunks (:data:`CPU_CHUNK` INRs at a time on a CPU, where a chunk's activations
then stay in cache; all at once elsewhere); the chunk size changes the result only by rounding
(batched matrix products may take other kernels for other batch sizes), and a given chunk size
repeats it exactly.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from l2o_graphs.inr.siren import image_grid, siren_apply, siren_init

# full-batch Adam steps and rate of every INR set; the PSNR they reach is in the README
# ("Weight-space tasks") and stored with every fit (the shards' ``psnr``)
FIT_STEPS = 200
FIT_LR = 3e-3
CPU_CHUNK = 16
"""INRs fitted at a time on a CPU by :func:`fit_sirens`: small enough for a chunk's activations
(``[chunk, pixels, 32]`` per layer) to stay in a core's cache."""


def fit_sirens(images: Tensor, seeds: Sequence[int], steps: int = FIT_STEPS, lr: float = FIT_LR,
               init: str = "siren", stop_psnr: Optional[float] = None,
               chunk: Optional[int] = None) -> Tuple[Dict[str, Tensor], Tensor]:
    """Fit one SIREN to each image.

    Args:
        images: ``[B, H, W]`` (or ``[B, 1, H, W]``) grey values in [0, 1].
        seeds: ``B`` seeds, one per image, for the initial parameters.
        steps: full-batch Adam steps (every pixel every step), at most.
        lr: Adam's learning rate.
        init: the initialisation scheme (:data:`~l2o_graphs.inr.siren.INIT_SCHEMES`).
        stop_psnr: when given, each SIREN stops at the first step whose PSNR (dB, before the
            step's update) reaches it: its parameters are those of that step, the others go on.
        chunk: INRs fitted at a time (default :data:`CPU_CHUNK` on a CPU, all of them on other
            devices); it changes the result only by floating-point rounding.
    Returns:
        ``params`` ``{name: [B, ...]}`` (names of :class:`~l2o_graphs.inr.siren.Siren`, detached)
        and ``psnr`` ``[B]``: each fit's peak signal-to-noise ratio in dB (peak 1).
    """
    if images.dim() == 4:
        images = images.squeeze(1)
    if images.dim() != 3:
        raise ValueError(f"images must be [B, H, W] or [B, 1, H, W], got {tuple(images.shape)}")
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {images.shape[0]} images")
    if chunk is None:
        chunk = CPU_CHUNK if images.device.type == "cpu" else max(1, images.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    parts = [_fit_chunk(images[a:a + chunk], seeds[a:a + chunk], steps, lr, init, stop_psnr)
             for a in range(0, max(images.shape[0], 1), chunk)]
    if len(parts) == 1:
        return parts[0]
    return ({name: torch.cat([p[name] for p, _ in parts]) for name in parts[0][0]},
            torch.cat([psnr for _, psnr in parts]))


def _fit_chunk(images: Tensor, seeds: Sequence[int], steps: int, lr: float, init: str,
               stop_psnr: Optional[float]) -> Tuple[Dict[str, Tensor], Tensor]:
    """:func:`fit_sirens` of one chunk: ``images`` ``[b, H, W]``."""
    coords = image_grid(images.shape[1], images.shape[2]).to(images)
    target = images.reshape(images.shape[0], -1, 1)
    params = {name: p.to(images).requires_grad_() for name, p in siren_init(seeds, scheme=init).items()}
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    stopped = {name: p.detach().clone() for name, p in params.items()}  # the stopped SIRENs' parameters
    done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        mse = (siren_apply(params, coords) - target).square().mean((1, 2))
        if stop_psnr is not None:
            reached = ~done & (_psnr(mse.detach()) >= stop_psnr)
            if bool(reached.any()):
                for name, p in params.items():
                    stopped[name][reached] = p.detach()[reached]
                done |= reached
                if bool(done.all()):
                    break
        # the sum of per-image means: each INR's gradient is that of its own loss
        mse.sum().backward()
        optimizer.step()
    with torch.no_grad():
        final = {name: torch.where(done.view(-1, *[1] * (p.dim() - 1)), stopped[name], p.detach())
                 for name, p in params.items()}
        psnr = _psnr((siren_apply(final, coords) - target).square().mean((1, 2)))
    return final, psnr


def _psnr(mse: Tensor) -> Tensor:
    """Peak signal-to-noise ratio (dB, peak 1) of mean squared errors."""
    return -10 * torch.log10(mse.clamp_min(1e-12))

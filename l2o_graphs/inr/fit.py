"""Fitting many SIRENs at once: one image each, parameters stacked along a batch dimension.

Every INR receives the gradient of its own mean squared error, and Adam acts element by element:
a batch of ``B`` fits is ``B`` independent fits computed with batched matrix products
(``torch.baddbmm``). The gradients are written out by hand (:func:`siren_mse_and_grads`, checked
against autograd in the tests), which lets ``torch.compile`` fuse a step's sines, cosines and
products into a few loops (``compile=True``). The batch is fitted in chunks (:data:`CPU_CHUNK`
INRs at a time on a CPU, where a chunk's activations then stay in cache; all at once
elsewhere); the chunk size changes the result only by rounding
(batched matrix products may take other kernels for other batch sizes), and a given chunk size
repeats it exactly.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from l2o_graphs.inr.siren import (OMEGA_0, OUTPUT_SHIFT, SIREN_SIZES, image_grid, linear_names, siren_apply,
                                  siren_init)

# full-batch Adam steps and rate of every INR set; the PSNR they reach is in the README
# ("Weight-space tasks") and stored with every fit (the shards' ``psnr``)
FIT_STEPS = 200
FIT_LR = 3e-3
CPU_CHUNK = 16
"""INRs fitted at a time on a CPU by :func:`fit_sirens`: small enough for a chunk's activations
(``[chunk, pixels, 32]`` per layer) to stay in a core's cache."""


def siren_mse_and_grads(params: Mapping[str, Tensor], coords: Tensor, target: Tensor,
                        sizes: Sequence[int] = SIREN_SIZES,
                        omega_0: float = OMEGA_0) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Each SIREN's mean squared error and its gradient, by the chain rule written out.

    Args:
        params: ``{name: [B, ...]}`` as :func:`~l2o_graphs.inr.siren.siren_apply` takes them.
        coords: ``[P, in]`` points, the same for every SIREN.
        target: ``[B, P, out]`` values there.
    Returns:
        ``mse`` ``[B]`` (mean over points and outputs) and ``{name: [B, ...]}``, the gradient of
        each SIREN's own ``mse`` with respect to its parameters (what autograd gives for
        ``mse.sum()``).
    """
    names = linear_names(sizes)
    last = len(names) - 1
    x = coords.unsqueeze(0).expand(target.shape[0], *coords.shape)
    inputs, cosines = [x], []
    for i, (w_name, b_name) in enumerate(names[:-1]):
        pre = torch.baddbmm(omega_0 * params[b_name].unsqueeze(1), x, (omega_0 * params[w_name]).transpose(1, 2))
        x = torch.sin(pre)
        cosines.append(torch.cos(pre))
        inputs.append(x)
    w_name, b_name = names[-1]
    error = torch.baddbmm(params[b_name].unsqueeze(1) + OUTPUT_SHIFT, x, params[w_name].transpose(1, 2)) - target
    mse = error.square().mean((1, 2))
    grad_out = error.mul_(2.0 / (error.shape[1] * error.shape[2]))  # d mse / d output, [B, P, out]
    grads: Dict[str, Tensor] = {}
    for i in range(last, -1, -1):
        scale = 1.0 if i == last else omega_0  # d pre-activation / d (x W^T + b)
        w_name, b_name = names[i]
        grads[w_name] = torch.bmm(grad_out.transpose(1, 2), inputs[i]).mul_(scale)
        grads[b_name] = grad_out.sum(1).mul_(scale)
        if i > 0:  # on to the pre-activation of layer i - 1 (in place: no temporaries of [B, P, width])
            grad_out = torch.bmm(grad_out, params[w_name]).mul_(cosines[i - 1]).mul_(scale)
    return mse, grads


_compiled_mse_and_grads: Optional[Callable] = None


def _mse_and_grads_fn(compile: bool) -> Callable:
    """:func:`siren_mse_and_grads`, through ``torch.compile`` when asked (compiled once per process,
    recompiled by torch for each new chunk shape)."""
    global _compiled_mse_and_grads
    if not compile:
        return siren_mse_and_grads
    if _compiled_mse_and_grads is None:
        _compiled_mse_and_grads = torch.compile(siren_mse_and_grads, dynamic=False)
    return _compiled_mse_and_grads


def fit_sirens(images: Tensor, seeds: Sequence[int], steps: int = FIT_STEPS, lr: float = FIT_LR,
               init: str = "siren", stop_psnr: Optional[float] = None,
               chunk: Optional[int] = None, compile: bool = False) -> Tuple[Dict[str, Tensor], Tensor]:
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
        compile: compute each step's gradients through ``torch.compile`` (needs a C++ compiler on
            a CPU, Triton on a GPU; the first chunk of each shape pays the compilation, seconds);
            it changes the result only by floating-point rounding.
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
    mse_and_grads = _mse_and_grads_fn(compile)
    parts = [_fit_chunk(images[a:a + chunk], seeds[a:a + chunk], steps, lr, init, stop_psnr, mse_and_grads)
             for a in range(0, max(images.shape[0], 1), chunk)]
    if len(parts) == 1:
        return parts[0]
    return ({name: torch.cat([p[name] for p, _ in parts]) for name in parts[0][0]},
            torch.cat([psnr for _, psnr in parts]))


def _fit_chunk(images: Tensor, seeds: Sequence[int], steps: int, lr: float, init: str,
               stop_psnr: Optional[float], mse_and_grads: Callable) -> Tuple[Dict[str, Tensor], Tensor]:
    """:func:`fit_sirens` of one chunk: ``images`` ``[b, H, W]``."""
    coords = image_grid(images.shape[1], images.shape[2]).to(images)
    target = images.reshape(images.shape[0], -1, 1)
    params = {name: p.to(images) for name, p in siren_init(seeds, scheme=init).items()}
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    stopped = {name: p.clone() for name, p in params.items()}  # the stopped SIRENs' parameters
    done = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    for _ in range(steps):
        mse, grads = mse_and_grads(params, coords, target)
        if stop_psnr is not None:
            reached = ~done & (_psnr(mse) >= stop_psnr)
            if bool(reached.any()):
                for name, p in params.items():
                    stopped[name][reached] = p[reached]
                done |= reached
                if bool(done.all()):
                    break
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
    with torch.no_grad():
        final = {name: torch.where(done.view(-1, *[1] * (p.dim() - 1)), stopped[name], p)
                 for name, p in params.items()}
        psnr = _psnr((siren_apply(final, coords) - target).square().mean((1, 2)))
    return final, psnr


def _psnr(mse: Tensor) -> Tensor:
    """Peak signal-to-noise ratio (dB, peak 1) of mean squared errors."""
    return -10 * torch.log10(mse.clamp_min(1e-12))

"""SIRENs (Sitzmann et al., 2020) as the paper's INRs: 2 -> 32 -> 32 -> 1, sine activations with
frequency ``omega_0 = 30``, output shifted by 0.5 so that a zero output is mid-grey.

Two views of the same network: :class:`Siren`, an ``nn.Module`` (what a neural graph is read
from), and :func:`siren_apply`, a pure function over a *batch* of parameter sets stacked along
a leading dimension (what fits thousands of INRs at once). Parameter names are the module's, so a
fitted set loads into a ``Siren`` with ``load_state_dict``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

SIREN_SIZES = (2, 32, 32, 1)
OMEGA_0 = 30.0
OUTPUT_SHIFT = 0.5


class Sine(nn.Module):
    """``sin(omega_0 * x)``."""

    def __init__(self, omega_0: float = OMEGA_0):
        super().__init__()
        self.omega_0 = omega_0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * x)

    def extra_repr(self) -> str:
        return f"omega_0={self.omega_0:g}"


class Siren(nn.Module):
    """A SIREN: ``layers`` alternate ``nn.Linear`` and :class:`Sine`, the last linear has no
    activation; ``forward(coords [..., in]) -> [..., out]`` adds ``OUTPUT_SHIFT``."""

    def __init__(self, sizes: Sequence[int] = SIREN_SIZES, omega_0: float = OMEGA_0):
        super().__init__()
        mods = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(Sine(omega_0))
        self.layers = nn.Sequential(*mods)
        self.sizes, self.omega_0 = tuple(sizes), omega_0

    def forward(self, coords: Tensor) -> Tensor:
        return self.layers(coords) + OUTPUT_SHIFT


def linear_names(sizes: Sequence[int] = SIREN_SIZES) -> list:
    """``(weight name, bias name)`` of each linear layer of :class:`Siren` ``(sizes)``, in order."""
    return [(f"layers.{2 * i}.weight", f"layers.{2 * i}.bias") for i in range(len(sizes) - 1)]


INIT_SCHEMES = ("siren", "dwsnets")
"""How :func:`siren_init` draws a SIREN's parameters: ``siren``, Sitzmann et al.'s (first-layer
weights ``U(-1/in, 1/in)``, later weights ``U(-sqrt(6/in)/omega_0, ...)``, biases as
``nn.Linear``'s, ``U(-1/sqrt(in), 1/sqrt(in))``); ``dwsnets``, the SIRENs of the DWSNets INR
sets (AvivNavon/DWSNets ``nn/inr.py``: every sine layer's weights, the first included,
``U(-sqrt(6/in)/omega_0, ...)`` and zero biases; the output layer as ``nn.Linear``'s, weights and
biases ``U(-1/sqrt(in), 1/sqrt(in))``)."""


def siren_init(seeds: Sequence[int], sizes: Sequence[int] = SIREN_SIZES, omega_0: float = OMEGA_0,
               scheme: str = "siren") -> Dict[str, Tensor]:
    """Stacked initial parameters ``{name: [B, ...]}``, one set per seed, each drawn from its own
    generator (so a set does not depend on the others in the batch), by ``scheme`` (one of
    :data:`INIT_SCHEMES`)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown SIREN initialisation {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    out: Dict[str, list] = {name: [] for pair in linear_names(sizes) for name in pair}
    last = len(sizes) - 2
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        for i, ((w_name, b_name), (a, b)) in enumerate(zip(linear_names(sizes), zip(sizes[:-1], sizes[1:]))):
            if scheme == "siren":
                bound = 1 / a if i == 0 else math.sqrt(6 / a) / omega_0
            else:
                bound = 1 / math.sqrt(a) if i == last else math.sqrt(6 / a) / omega_0
            out[w_name].append((torch.rand(b, a, generator=gen) * 2 - 1) * bound)  # weight first, then bias
            if scheme == "siren" or i == last:
                out[b_name].append((torch.rand(b, generator=gen) * 2 - 1) / math.sqrt(a))
            else:
                out[b_name].append(torch.zeros(b))
    return {name: torch.stack(values) for name, values in out.items()}


def _layer_values(params: Mapping[str, Tensor], coords: Tensor, sizes: Sequence[int],
                  omega_0: float) -> Iterator[Tensor]:
    """The inputs ``[B, P, in]``, then each layer's outputs ``[B, P, width]``."""
    names = linear_names(sizes)
    x = coords.unsqueeze(0).expand(params[names[0][0]].shape[0], *coords.shape)
    yield x
    for i, (w_name, b_name) in enumerate(names):
        weight, bias = params[w_name], params[b_name]
        if i < len(names) - 1:  # omega_0 folded into the (small) weights, not the (large) activations
            x = torch.sin(torch.baddbmm(omega_0 * bias.unsqueeze(1), x, (omega_0 * weight).transpose(1, 2)))
        else:
            x = torch.baddbmm(bias.unsqueeze(1) + OUTPUT_SHIFT, x, weight.transpose(1, 2))
        yield x


def siren_apply(params: Mapping[str, Tensor], coords: Tensor, sizes: Sequence[int] = SIREN_SIZES,
                omega_0: float = OMEGA_0) -> Tensor:
    """Evaluate ``B`` SIRENs at the same points: ``params`` ``{name: [B, ...]}``, ``coords``
    ``[P, in]`` -> ``[B, P, out]``."""
    *_, out = _layer_values(params, coords, sizes, omega_0)
    return out


def siren_activations(params: Mapping[str, Tensor], coords: Tensor, sizes: Sequence[int] = SIREN_SIZES,
                      omega_0: float = OMEGA_0) -> Tensor:
    """Every neuron's value at ``P`` points, in the neural graph's node order (inputs, then each
    layer's neurons): ``params`` ``{name: [B, ...]}``, ``coords`` ``[P, in]`` -> ``[B, N, P]``
    with ``N = sum(sizes)`` (the output neuron's value includes ``OUTPUT_SHIFT``)."""
    return torch.cat(list(_layer_values(params, coords, sizes, omega_0)), 2).transpose(1, 2)


def move_inputs(params: Mapping[str, Tensor], rotation: Tensor, shift: Tensor,
                sizes: Sequence[int] = SIREN_SIZES) -> Dict[str, Tensor]:
    """The parameters of SIRENs that render, at every point ``x``, what ``params`` render at
    ``rotation @ x + shift``: exact, as only the first layer's affine map changes (weights
    ``W @ rotation``, biases ``b + W @ shift``). ``params`` ``{name: [B, ...]}``, ``rotation``
    ``[B, in, in]`` (any matrix), ``shift`` ``[B, in]`` in the coordinates' units."""
    weight_name, bias_name = linear_names(sizes)[0]
    weight = params[weight_name]
    out = dict(params)
    out[weight_name] = weight @ rotation.to(weight)
    out[bias_name] = params[bias_name] + (weight @ shift.to(weight).unsqueeze(-1)).squeeze(-1)
    return out


class SirenProbe(nn.Module):
    """Probe features (the paper's): each neuron's values at ``points`` learnable input points,
    ``[B, N, points]`` in node order. Relabelling hidden neurons relabels the rows the same way."""

    def __init__(self, points: int, sizes: Sequence[int] = SIREN_SIZES, omega_0: float = OMEGA_0):
        super().__init__()
        self.points = nn.Parameter(torch.rand(points, sizes[0]) * 2 - 1)
        self.sizes, self.omega_0 = tuple(sizes), omega_0

    def forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return siren_activations(params, self.points, self.sizes, self.omega_0)


def image_grid(height: int, width: int) -> Tensor:
    """``[height * width, 2]`` pixel-centre coordinates in [-1, 1], row-major (y, x)."""
    ys, xs = torch.linspace(-1, 1, height), torch.linspace(-1, 1, width)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)

"""Optimizee architectures: MLPs, the paper's small CNN, CNNs with flatten, residual CNNs."""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
from torch import Tensor, nn

ACTIVATION_MODULES: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU, "identity": nn.Identity,
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATION_MODULES:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATION_MODULES)}")
    return ACTIVATION_MODULES[name]()


def mlp(sizes: Sequence[int], activation: str = "relu", flatten_input: bool = True) -> nn.Sequential:
    """``sizes = [in, hidden..., out]``; the activation follows every layer but the last.

    With ``flatten_input`` the input ``[B, *]`` is flattened first (images go in as they are)."""
    if len(sizes) < 2:
        raise ValueError(f"an MLP needs at least input and output sizes, got {list(sizes)}")
    layers: list = [nn.Flatten()] if flatten_input else []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


def paper_cnn(width: int = 1, in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """The CNN of Kofinas et al.'s learning-to-optimize experiment (see ANCHORS.md).

    conv ``in -> 16w`` (3x3, stride 2), ``16w -> 32w`` (3x3, stride 2), ``32w -> 32w`` (3x3),
    ReLU after each, global average pooling, linear ``32w -> num_classes``; ``width=2`` is the
    meta-test network. On 28x28 inputs the maps are 13x13, 6x6 and 4x4."""
    c1, c2 = 16 * width, 32 * width
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 3, stride=2), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2), nn.ReLU(),
        nn.Conv2d(c2, c2, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, num_classes))


def cnn_flatten(channels: Sequence[int] = (8, 16), kernel: int = 3, image_size: int = 28,
                hidden: int = 32, num_classes: int = 10, activation: str = "relu",
                in_channels: int = 1) -> nn.Sequential:
    """Stride-2 convs, then the feature map flattened into two linear layers."""
    layers: list = []
    size, prev = image_size, in_channels
    for c in channels:
        layers += [nn.Conv2d(prev, c, kernel, stride=2, padding=kernel // 2), _activation(activation)]
        size, prev = (size + 2 * (kernel // 2) - kernel) // 2 + 1, c
    layers += [nn.Flatten(), nn.Linear(prev * size * size, hidden), _activation(activation),
               nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))`` with 3x3 convs keeping the channel count."""

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = _activation(activation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act2(x + self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))


class ResidualCNN(nn.Module):
    """Stem conv + BN, ``blocks`` residual blocks, global average pooling, linear head."""

    def __init__(self, channels: int = 16, blocks: int = 2, in_channels: int = 1, num_classes: int = 10,
                 activation: str = "relu"):
        super().__init__()
        # no bias: BatchNorm right after removes it (its gradient would be pure rounding noise)
        self.stem = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.stem_act = _activation(activation)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, activation) for _ in range(blocks)])
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.stem_act(self.stem_bn(self.stem(x))))
        return self.head(torch.flatten(x.mean(dim=(2, 3)), 1))


ARCHITECTURES: Dict[str, Callable[[], nn.Module]] = {
    "paper-cnn": paper_cnn,
    "paper-cnn-x2": lambda: paper_cnn(width=2),
    "mlp": lambda: mlp([784, 128, 128, 10]),
    "cnn-flatten": cnn_flatten,
    "residual-cnn": ResidualCNN,
}
"""Named architectures for the command line (28x28 single-channel inputs)."""


def build_architecture(name: str) -> nn.Module:
    """One of :data:`ARCHITECTURES`, freshly initialised."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]()


class Residual(nn.Module):
    """``x + inner(x)``: a skip connection around a shape-preserving block."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return x + self.inner(x)


def conv_net(channels: Sequence[int], kernel: int = 3, head: str = "pool", activation: str = "relu",
             batchnorm: bool = False, residual: bool = False, in_channels: int = 1, image_size: int = 28,
             num_classes: int = 10) -> nn.Sequential:
    """A CNN of ``len(channels)`` conv layers (padding ``kernel // 2``; the first two stride 2),
    optional BatchNorm after each conv, optional skip connections around the layers that keep
    their shape, then global average pooling (``head="pool"``) or the map flattened into the
    linear classifier (``head="flatten"``)."""
    if head not in ("pool", "flatten"):
        raise ValueError(f"head must be 'pool' or 'flatten', got {head!r}")
    layers: list = []
    size, prev = image_size, in_channels
    for i, c in enumerate(channels):
        stride = 2 if i < 2 else 1
        block = [nn.Conv2d(prev, c, kernel, stride=stride, padding=kernel // 2, bias=not batchnorm)]
        if batchnorm:
            block.append(nn.BatchNorm2d(c))
        block.append(_activation(activation))
        keeps_shape = stride == 1 and c == prev
        layers.append(Residual(nn.Sequential(*block)) if residual and keeps_shape else nn.Sequential(*block))
        size, prev = (size + 2 * (kernel // 2) - kernel) // stride + 1, c
    if head == "pool":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, num_classes)]
    else:
        layers += [nn.Flatten(), nn.Linear(prev * size * size, num_classes)]
    return nn.Sequential(*layers)


def build_optimizee(arch: Dict[str, object], in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """An optimizee from a plain-data description (as task specs and YAML suites hold them):
    ``{"kind": "mlp", "hidden": [64, 64], "activation": "relu"}``,
    ``{"kind": "cnn", "channels": [16, 32], "kernel": 3, "head": "pool", "activation": "relu",
    "batchnorm": False, "residual": False}``, ``{"kind": "paper-cnn", "width": 1}`` or
    ``{"kind": "resnet", "channels": 16, "blocks": 2}`` (:class:`ResidualCNN`)."""
    arch = dict(arch)
    kind = arch.pop("kind")
    if kind == "mlp":
        sizes = [in_channels * image_size * image_size, *arch.pop("hidden"), num_classes]
        return mlp(sizes, **arch)
    if kind == "cnn":
        return conv_net(in_channels=in_channels, image_size=image_size, num_classes=num_classes, **arch)
    if kind == "paper-cnn":
        return paper_cnn(in_channels=in_channels, num_classes=num_classes, **arch)
    if kind == "resnet":
        return ResidualCNN(in_channels=in_channels, num_classes=num_classes, **arch)
    raise ValueError(f"unknown optimizee kind {kind!r}; choose mlp, cnn, paper-cnn or resnet")

"""Type aliases shared across the package."""
from typing import Dict

from torch import Tensor

TensorDict = Dict[str, Tensor]
"""Tensors by name: parameters, gradients, per-parameter state or outputs of a model."""

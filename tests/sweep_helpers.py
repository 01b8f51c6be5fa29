"""A user's own task and optimizer, named by import path in the sweep tests (``sweep_helpers:...``)."""
import torch
from torch import nn

from l2o_graphs.tasks.train import Problem


def blobs(seed: int, width: int = 8) -> Problem:
    """Three Gaussian blobs in 4-D; the data are fixed, the MLP's initialisation follows ``seed``."""
    data = torch.Generator().manual_seed(123)
    centres = torch.randn(3, 4, generator=data) * 2
    labels = torch.randint(3, (300,), generator=data)
    points = centres[labels] + torch.randn(300, 4, generator=data)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 3))
    return Problem(model, (points[:240], labels[:240]), (points[240:], labels[240:]), batch_size=32)


def not_a_problem(seed: int):
    return {"model": None}


class SignSGD(torch.optim.Optimizer):
    """``p <- p - lr * sign(grad)``: an optimizer class of the user's own."""

    def __init__(self, params, lr: float = 1e-2):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-group["lr"])


def dies(seed: int) -> Problem:
    """Kills the worker process that builds it (seed 0), as an out-of-memory kill would."""
    if seed == 0:
        import os

        os._exit(3)
    return blobs(seed)

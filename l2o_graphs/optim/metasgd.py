"""MetaSGD's update with meta-learned per-parameter learning rates, as a ``torch.optim.Optimizer``
(the rates come from :func:`l2o_graphs.meta.metasgd.meta_train_metasgd`)."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor


class MetaSGDOptimizer(torch.optim.Optimizer):
    """``p <- p - lr * lrs[i] * grad`` with meta-learned per-parameter rates ``lrs`` (one tensor
    per parameter, in ``params`` order)."""

    def __init__(self, params: Iterable[Tensor], lrs: Sequence[Tensor], lr: float = 1.0):
        super().__init__(params, dict(lr=lr))
        flat = [p for group in self.param_groups for p in group["params"]]
        if len(flat) != len(lrs) or any(p.shape != r.shape for p, r in zip(flat, lrs)):
            raise ValueError("MetaSGD learning rates do not match the parameters' shapes (they are "
                             "meta-trained for one architecture)")
        self._rates = {id(p): r.to(p.device) for p, r in zip(flat, lrs)}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * self._rates[id(p)] * p.grad)
        return loss

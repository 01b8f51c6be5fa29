"""Supervised training of weight-space models: minibatch AdamW with cosine decay, the epoch with
the best validation score kept, the test split read once at the end."""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

Split = Tuple[Mapping[str, Tensor], Tensor]  # ({name: [n, *shape]}, targets [n])


def _rows(params: Mapping[str, Tensor], index: Tensor) -> Dict[str, Tensor]:
    return {n: p[index] for n, p in params.items()}


@torch.no_grad()
def predict(model: nn.Module, params: Mapping[str, Tensor], batch_size: int = 256) -> Tensor:
    """``model`` outputs for all ``n`` networks, in batches, in eval mode: ``[n, out_dim]``."""
    was_training = model.training
    model.eval()
    n = next(iter(params.values())).shape[0]
    out = torch.cat([model(_rows(params, torch.arange(a, min(n, a + batch_size))))
                     for a in range(0, n, batch_size)]) if n else torch.empty(0)
    model.train(was_training)
    return out


def accuracy(model: nn.Module, split: Split, batch_size: int = 256) -> float:
    params, labels = split
    return float((predict(model, params, batch_size).argmax(1) == labels).float().mean()) if len(labels) else math.nan


def fit_classifier(model: nn.Module, train: Split, val: Split, test: Split, epochs: int = 20,
                   batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
                   progress: bool = True, log: Optional[Callable[[Dict[str, float]], None]] = None) -> Dict:
    """Train ``model`` (networks' parameters -> class logits) with cross-entropy.

    Returns ``val_acc`` (best epoch), ``test_acc`` (of that epoch's weights, left in ``model``),
    ``best_epoch``, ``history`` (per epoch: mean train loss, val accuracy) and ``seconds``."""
    params, labels = train
    n = len(labels)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(n / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    from tqdm.auto import tqdm

    history: List[Dict[str, float]] = []
    best = (-1.0, copy.deepcopy(model.state_dict()), 0)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=f"training {type(model).__name__}", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for a in range(0, n, batch_size):
            index = order[a:a + batch_size]
            loss = nn.functional.cross_entropy(model(_rows(params, index)), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        row = {"epoch": epoch + 1, "train_loss": total / n, "val_acc": accuracy(model, val)}
        history.append(row)
        if log is not None:
            log(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_acc']:.3f}")
        if row["val_acc"] > best[0]:
            best = (row["val_acc"], copy.deepcopy(model.state_dict()), epoch + 1)
    model.load_state_dict(best[1])
    return {"val_acc": best[0], "test_acc": accuracy(model, test), "best_epoch": best[2], "history": history,
            "seconds": time.perf_counter() - start}

"""Supervised training of weight-space models: minibatch AdamW with cosine decay, the epoch with
the best validation score kept, the test split read once at the end."""
from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from l2o_graphs.cache import atomic_save

Params = Mapping[str, Tensor]  # {name: [n, *shape]}
Split = Tuple[Params, Tensor]  # (params, targets [n])


def _rows(params: Params, index: Tensor) -> Dict[str, Tensor]:
    return {n: p[index] for n, p in params.items()}


def _count(params: Params) -> int:
    return next(iter(params.values())).shape[0] if params else 0


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with autograd off inside the block; its mode as before after it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def batch_outputs(model: nn.Module, n: int, batch_size: int, inputs: Callable[[int, int], object]) -> Tensor:
    """``model(inputs(a, b))`` over consecutive ranges ``[a, b)`` of ``batch_size`` covering ``n``
    examples, in eval mode (:func:`evaluating`), concatenated along the first dimension."""
    with evaluating(model):
        outs = [model(inputs(a, min(n, a + batch_size))) for a in range(0, n, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)


def predict(model: nn.Module, params: Params, batch_size: int = 256) -> Tensor:
    """``model`` outputs for all ``n`` networks, in batches, in eval mode: ``[n, out_dim]``."""
    return batch_outputs(model, _count(params), batch_size, lambda a, b: _rows(params, torch.arange(a, b)))


def accuracy(model: nn.Module, split: Split, batch_size: int = 256) -> float:
    params, labels = split
    return float((predict(model, params, batch_size).argmax(1) == labels).float().mean()) if len(labels) else math.nan


def mean_loss(model: nn.Module, loss: Callable[[nn.Module, Params], Tensor], params: Params,
              batch_size: int = 256) -> float:
    """``loss`` averaged over all networks of ``params`` (batch means weighted by batch size)."""
    n = _count(params)
    with evaluating(model):
        total = sum(float(loss(model, _rows(params, torch.arange(a, min(n, a + batch_size))))) *
                    (min(n, a + batch_size) - a) for a in range(0, n, batch_size))
    return total / n if n else math.nan


def fit_loop(model: nn.Module, batch_loss: Callable[[Tensor], Tensor], n: int, validate: Callable[[], float],
           higher_is_better: bool, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
           progress: bool, log: Optional[Callable[[Dict[str, float]], None]],
           checkpoint: Optional[Union[str, Path]] = None, generators: Sequence[torch.Generator] = (),
           settings: Optional[Mapping[str, object]] = None) -> Tuple[List[Dict[str, float]], float, int, float]:
    """The training loop every weight-space model shares (AdamW, cosine schedule, shuffled
    batches of ``batch_loss(indices)`` over ``n`` examples, ``validate()`` after every epoch);
    leaves the best validation epoch's weights in ``model``. Returns history, best validation
    score, best epoch and seconds (of training, summed over resumed parts).

    With ``checkpoint`` (a file path) the state after every epoch is written there atomically:
    model, optimizer, schedule, the shuffling generator, ``generators`` (others that
    ``batch_loss`` draws from), torch's global generator, history and best epoch; a call that
    finds the file goes on from it, so an interrupted run continues exactly as if it had not
    stopped. ``settings`` (JSON-like) are stored with it, and a file written with other
    settings, another ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``seed`` or ``n`` is
    refused (``ValueError``)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(n / batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    from tqdm.auto import tqdm

    history: List[Dict[str, float]] = []
    sign = 1.0 if higher_is_better else -1.0
    best = (-math.inf, math.nan, copy.deepcopy(model.state_dict()), 0)  # (score, val, weights, epoch)
    identity = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed,
                "examples": n, "settings": dict(settings or {})}
    spent, first = 0.0, 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if state["identity"] != identity:
            changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
            raise ValueError(f"{checkpoint} holds a training run with other settings (differs in {', '.join(changed)}): "
                             "remove it or choose another checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        gen.set_state(state["generator"])
        for g, saved in zip(generators, state["generators"]):
            g.set_state(saved)
        torch.set_rng_state(state["torch_rng"])
        history, spent, first = state["history"], state["seconds"], state["epoch"]
        best = (state["best_score"], state["best_val"], state["best_model"], state["best_epoch"])
    start = time.perf_counter()
    bar = tqdm(range(first, epochs), desc=f"training {type(model).__name__}", disable=not progress,
               initial=first, total=epochs)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for a in range(0, n, batch_size):
            index = order[a:a + batch_size]
            loss = batch_loss(index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        row = {"epoch": epoch + 1, "train_loss": total / n, "val": validate()}
        history.append(row)
        if log is not None:
            log(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{row['val']:.4g}")
        # a NaN score (no validation data, tied predictions) ranks lowest; among equals the later
        # epoch wins, so without any validation score the last epoch is kept
        score = -math.inf if math.isnan(row["val"]) else sign * row["val"]
        if score >= best[0]:
            best = (score, row["val"], copy.deepcopy(model.state_dict()), epoch + 1)
        if checkpoint is not None:
            atomic_save({"identity": identity, "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                         "generator": gen.get_state(), "generators": [g.get_state() for g in generators],
                         "torch_rng": torch.get_rng_state(), "history": history,
                         "seconds": spent + time.perf_counter() - start, "best_score": best[0], "best_val": best[1],
                         "best_model": best[2], "best_epoch": best[3]}, checkpoint)
    model.load_state_dict(best[2])
    return history, best[1], best[3], spent + time.perf_counter() - start


Augment = Callable[[Dict[str, Tensor], torch.Generator], Dict[str, Tensor]]
"""A random transformation of a training batch of parameter sets ``{name: [b, *shape]}`` that
keeps each set's label, drawing from the generator it is given."""


def fit_classifier(model: nn.Module, train: Split, val: Split, test: Split, epochs: int = 20,
                   batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
                   progress: bool = True, log: Optional[Callable[[Dict[str, float]], None]] = None,
                   augment: Optional[Augment] = None, checkpoint: Optional[Union[str, Path]] = None,
                   settings: Optional[Mapping[str, object]] = None) -> Dict:
    """Train ``model`` (networks' parameters -> class logits) with cross-entropy; ``augment``
    transforms every training batch (its generator is seeded from ``seed``). ``checkpoint`` and
    ``settings``: resumable training, see :func:`fit_loop`.

    Returns ``val_acc`` (best epoch), ``test_acc`` (of that epoch's weights, left in ``model``),
    ``best_epoch``, ``history`` (per epoch: mean train loss, ``val`` accuracy) and ``seconds``."""
    params, labels = train
    gen = torch.Generator().manual_seed(seed + 1)

    def batch_loss(index: Tensor) -> Tensor:
        batch = _rows(params, index)
        if augment is not None:
            batch = augment(batch, gen)
        return nn.functional.cross_entropy(model(batch), labels[index])

    history, best, epoch, seconds = fit_loop(model, batch_loss, len(labels), lambda: accuracy(model, val), True,
                                           epochs, batch_size, lr, weight_decay, seed, progress, log,
                                           checkpoint=checkpoint, generators=(gen,), settings=settings)
    return {"val_acc": best, "test_acc": accuracy(model, test), "best_epoch": epoch, "history": history,
            "seconds": seconds}


def fit_regressor(model: nn.Module, loss: Callable[[nn.Module, Params], Tensor], train: Params, val: Params,
                  test: Params, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                  seed: int = 0, progress: bool = True,
                  log: Optional[Callable[[Dict[str, float]], None]] = None) -> Dict:
    """Train ``model`` to minimise ``loss(model, params_batch)`` (a mean over the batch).

    Returns ``val_mse`` / ``test_mse`` (the loss on those splits at the best validation epoch),
    ``best_epoch``, ``history`` and ``seconds``."""
    history, best, epoch, seconds = fit_loop(
        model, lambda index: loss(model, _rows(train, index)), _count(train), lambda: mean_loss(model, loss, val),
        False, epochs, batch_size, lr, weight_decay, seed, progress, log)
    return {"val_mse": best, "test_mse": mean_loss(model, loss, test), "best_epoch": epoch, "history": history,
            "seconds": seconds}

"""learn2learn's MetaSGD (meta-learned per-parameter learning rates) as a learned-optimizer
baseline: its meta-training. The optimizer that applies the rates is
:class:`l2o_graphs.optim.MetaSGDOptimizer`.

MetaSGD's learning rates have the shapes of one architecture's parameters, so it is meta-trained
per architecture (it cannot transfer to another network as the graph optimizers do); it uses the
same truncated unrolls and meta-loss as :mod:`l2o_graphs.meta.unroll`, with learn2learn's
``MetaSGD.clone`` and ``meta_sgd_update`` doing the inner updates.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor, nn

from l2o_graphs.meta.unroll import Trajectory, end_if_diverged, log_ratios, sample_length
from l2o_graphs.tasks.fewshot import import_learn2learn
from l2o_graphs.tasks.task import Task, TaskSpec


def meta_train_metasgd(spec: TaskSpec, datasets: Sequence[str], outer_steps: int = 200, unroll: int = 20,
                       trajectory_length: Sequence[int] = (100, 2000), init_lr: float = 0.01,
                       outer_lr: float = 1e-3, seed: int = 0) -> List[Tensor]:
    """Per-parameter learning rates for ``spec``'s architecture, meta-trained on ``datasets``
    (first order: the optimizee's gradients are constants inside a truncation), for
    :class:`~l2o_graphs.optim.MetaSGDOptimizer`.

    The outer optimiser is Adam, which moves every rate by about ``outer_lr`` per step whatever
    its gradient's scale: with ``1e-2`` the rates of a 784-128-128-10 MLP spread to [-1, 2.3]
    within 500 steps and training with them diverged."""
    l2l = import_learn2learn()
    from learn2learn.algorithms.meta_sgd import meta_sgd_update

    sampler = torch.Generator().manual_seed(seed)
    metasgd = None
    outer = None
    traj, task = None, None
    for _ in range(outer_steps):
        if traj is None or traj.done:
            dataset = datasets[int(torch.randint(len(datasets), (1,), generator=sampler))]
            task_seed = int(torch.randint(2 ** 31 - 1, (1,), generator=sampler))
            task = Task(TaskSpec(spec.architecture, dataset, spec.batch_size, task_seed))
            if metasgd is None:
                metasgd = l2l.algorithms.MetaSGD(task.module, lr=init_lr, first_order=True)
                outer = torch.optim.Adam(metasgd.lrs.parameters(), lr=outer_lr)
            with torch.no_grad():
                for p, q in zip(metasgd.module.parameters(), task.init_params()[0].values()):
                    p.copy_(q)
            traj = Trajectory(task.spec, sample_length(tuple(trajectory_length), sampler),
                              batches=torch.Generator().manual_seed(task_seed + 1))
        learner = metasgd.clone()
        loss = _loss(learner, task, traj.batches)
        if traj.base_loss is None:
            traj.base_loss = max(loss.item(), 1e-8)
        losses = []
        for k in range(unroll):
            grads = torch.autograd.grad(loss, list(learner.module.parameters()), retain_graph=k > 0)
            learner.module = meta_sgd_update(learner.module, learner.lrs, grads)
            loss = _loss(learner, task, traj.batches)
            losses.append(loss)
        outer.zero_grad()
        meta = log_ratios(losses, traj.base_loss).mean()
        if torch.isfinite(meta):
            meta.backward()
            outer.step()
        with torch.no_grad():
            for p, q in zip(metasgd.module.parameters(), learner.module.parameters()):
                p.copy_(q)
        traj.advance_schedule(unroll)
        end_if_diverged(traj, loss.item())
    return [lr.detach().clone() for lr in metasgd.lrs]


def _loss(learner: nn.Module, task: Task, batches: torch.Generator) -> Tensor:
    x, y = task.batch(batches)
    return nn.functional.cross_entropy(learner(x), y)

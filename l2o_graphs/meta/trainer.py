"""The meta-training loop: outer Adam over truncated unrolls of a meta-batch of trajectories,
with atomic checkpoints, exact resume, metrics and (under ``torchrun``) data parallelism.

Distributed runs split the meta-batch across ranks: every rank draws the same task sequence
from the same seed, unrolls only its own trajectories, and meta-gradients are summed with
``all_reduce``; rank 0 writes checkpoints, metrics and weights.

Auxiliary weight-space tasks (``cfg.auxiliary``, :mod:`l2o_graphs.meta.auxiliary`) compute their
weighted losses on the update network's trunk at every outer step, with either estimator (on
rank 0 only, so that the all-reduce counts them once); their gradient trains the tasks' heads and
``cfg.auxiliary_parameters``, the meta-gradient trains ``cfg.meta_parameters``, each clipped on
its own. The heads are kept in the checkpoint, and ``weights.pt`` holds the update network alone.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn

from l2o_graphs.cache import atomic_save, atomic_write_text, folder_lock, read_jsonl
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.meta.auxiliary import auxiliary_losses, build_auxiliary
from l2o_graphs.meta.config import MetaConfig
from l2o_graphs.meta.particles import output_layer_names, output_layers, particle_graph, unroll_particles
from l2o_graphs.meta.pes import antithetic_noise, flat_parameters, pes_gradient, set_flat_parameters
from l2o_graphs.meta.unroll import (DIVERGED, Trajectory, TrajectoryPair, relative_meta_loss, sample_length,
                                    unroll)
from l2o_graphs.meta.validation import is_validation, selection_score, validate
from l2o_graphs.nn import UpdateNet, build_net
from l2o_graphs.optim.update import all_finite
from l2o_graphs.optim.weights import save_weights
from l2o_graphs.rules import get_rule
from l2o_graphs.tasks.suites import Suite, load_suite, parse_suite
from l2o_graphs.tasks.task import Task, TaskSpec
from l2o_graphs.tasks.train import is_heldout

CHECKPOINT = "checkpoint.pt"
CARRY = "carry.pt"
"""The compact state of a run (no trajectories): enough to carry it on elsewhere."""
METRICS = "metrics.jsonl"
VALIDATION = "validation.jsonl"
WEIGHTS = "weights.pt"
BEST = "best.pt"
VALIDATED = "validated"  # every validated network, as validated/step-NNNNN.pt
AUXILIARY_WARMUP = "auxiliary_warmup.jsonl"
RUN_FILES = (CHECKPOINT, CARRY, METRICS, VALIDATION, WEIGHTS, BEST, AUXILIARY_WARMUP, "meta_curves.png")
"""What a run writes into its directory (besides ``config.json``)."""


class MetaTrainingDiverged(RuntimeError):
    """The update network's weights stopped being finite; nothing was saved after the last good
    checkpoint."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA device is available (use 'cpu' or 'auto')")
    return torch.device(name)


def _suite(cfg: MetaConfig) -> Suite:
    return parse_suite(cfg.suite) if isinstance(cfg.suite, dict) else load_suite(cfg.suite)


def _lr_factor(cfg: MetaConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.outer_steps - cfg.warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _new_trajectory(suite: Suite, cfg: MetaConfig, sampler: torch.Generator) -> Union[Trajectory, TrajectoryPair]:
    """A new trajectory (an antithetic pair of them under PES)."""
    spec = suite.sample(sampler)
    while is_heldout(spec) or is_validation(spec):  # evaluation and validation tasks stay unseen
        spec = suite.sample(sampler)
    length = sample_length(cfg.trajectory_length, sampler)
    if cfg.estimator == "pes":
        return TrajectoryPair.new(spec, length, reference=cfg.meta_loss == "relative")
    return Trajectory(spec, length)


def _clip_in_place(grads: List[torch.Tensor], max_norm: float) -> float:
    """Scale ``grads`` in place to a total norm of at most ``max_norm`` (as ``clip_grad_norm_``
    scales ``.grad``); returns their norm before, and leaves non-finite ones as they are."""
    norm = float(nn.utils.get_total_norm(grads))
    if math.isfinite(norm):
        scale = min(1.0, max_norm / (norm + 1e-6))
        for grad in grads:
            grad.mul_(scale)
    return norm


def _select(net: nn.Module, prefixes: Tuple[str, ...], field_name: str = "meta_parameters") -> List[nn.Parameter]:
    """The parameters of ``net`` whose names start with one of ``prefixes`` (all when empty);
    ``field_name``: the config field that names them, for the error."""
    named = list(net.named_parameters())
    if not prefixes:
        return [p for _, p in named]
    unmatched = [prefix for prefix in prefixes if not any(n.startswith(prefix) for n, _ in named)]
    if unmatched:
        raise ValueError(f"{field_name}: no parameter of {type(net).__name__} starts with {unmatched[0]!r}")
    return [p for n, p in named if n.startswith(tuple(prefixes))]


@contextlib.contextmanager
def torchrun_process_group(device: str = "auto") -> Iterator[bool]:
    """The process group of a run launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment),
    set up on entry and torn down on exit; yields whether the run is distributed (without
    ``torchrun`` nothing is set up). ``device``: the config's device choice (``"cpu"`` keeps a GPU
    machine on gloo; otherwise NCCL on CUDA, each process on its ``LOCAL_RANK`` GPU).

    Use it around :class:`MetaTrainer` in a script of your own as ``l2o-graphs meta-train`` does::

        with torchrun_process_group(cfg.device):
            MetaTrainer(cfg, run_dir).run()
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        # torch._dynamo, imported lazily by the first torch.optim optimizer, keeps references to a
        # process group that exists when it is imported, which destroy_process_group cannot drop:
        # gloo's worker threads then outlive it and can abort the interpreter's exit (SIGABRT,
        # "terminate called without an active exception"). Imported first, it holds none.
        importlib.import_module("torch._dynamo")
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield distributed
    finally:
        if distributed:
            dist.destroy_process_group()


def validated_weights(run_dir: Union[str, Path], step: int) -> Path:
    """Where a run keeps the network it validated at outer step ``step``."""
    return Path(run_dir) / VALIDATED / f"step-{step:05d}.pt"


class MetaTrainer:
    """State of a meta-training run; :meth:`run` trains to ``cfg.outer_steps``.

    Args:
        cfg: the run's configuration.
        run_dir: where ``config.json``, ``checkpoint.pt``, ``metrics.jsonl`` and ``weights.pt`` go.
        resume: continue from ``run_dir/checkpoint.pt`` (or the compact ``carry.pt``); a
            ``ValueError`` says so when there is neither.
        overwrite: start again in a directory that holds a run (its files are removed when
            :meth:`run` starts). Without ``resume`` or ``overwrite`` such a directory is refused:
            a finished run is never destroyed silently.

    :meth:`run` holds an exclusive lock on the directory (:func:`~l2o_graphs.cache.folder_lock`):
    a second process on it is refused instead of interleaving its files.
    """

    def __init__(self, cfg: MetaConfig, run_dir: Union[str, Path], resume: bool = False, overwrite: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        existing = [name for name in RUN_FILES if (self.run_dir / name).exists()]
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other")
        if resume and not (self.run_dir / CHECKPOINT).is_file() and not (self.run_dir / CARRY).is_file():
            raise ValueError(f"nothing to resume in {self.run_dir}: it holds no {CHECKPOINT} or {CARRY}")
        if existing and not resume and not overwrite:
            raise ValueError(f"{self.run_dir} holds a meta-training run ({', '.join(existing)}); continue it "
                             f"with --resume (resume=True), start it again with --overwrite (overwrite=True), or "
                             f"choose another run directory")
        self._overwrite = overwrite
        self.device = resolve_device(cfg.device)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.suite = _suite(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net: UpdateNet = build_net(cfg.net, **cfg.net_config).to(self.device)
            self.auxiliary = build_auxiliary(cfg.auxiliary, self.net, self.device)
        if cfg.meta_loss == "relative" and not get_rule(self.net.update_rule).zero_init:
            raise ValueError(f"meta_loss 'relative' measures the net against its rule's untrained form, and the "
                             f"rule {self.net.update_rule!r} has none: choose a zero_init rule (net_config update)")
        # what the meta-loss trains (cfg.meta_parameters) and what the auxiliary losses train (the
        # tasks' heads and cfg.auxiliary_parameters); the net's other parameters stay as initialised
        self.meta_params = _select(self.net, cfg.meta_parameters)
        aux_params = _select(self.net, cfg.auxiliary_parameters, "auxiliary_parameters") if cfg.auxiliary else []
        for p in self.net.parameters():
            p.requires_grad_(any(p is q for q in self.meta_params + aux_params))
        aux_only = [p for p in aux_params if not any(p is q for q in self.meta_params)] + list(self.auxiliary.parameters())
        self.aux_trainable = aux_params + list(self.auxiliary.parameters())
        self.trainable = self.meta_params + aux_only
        groups = ([{"params": self.trainable}] if cfg.auxiliary_lr is None else
                  [{"params": self.meta_params}, {"params": aux_only, "lr": cfg.auxiliary_lr}])
        self.outer = torch.optim.Adam(groups, lr=cfg.lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.outer, _lr_factor(cfg))
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        # a stream of its own, so that runs with and without auxiliary tasks see the same tasks
        self.auxiliary_sampler = torch.Generator().manual_seed(cfg.seed + 1)
        # PES's perturbations: a stream of their own, drawn alike on every rank
        self.noise_sampler = torch.Generator().manual_seed(cfg.seed + 2)
        self.perturbed = copy.deepcopy(self.net) if cfg.estimator == "pes" else None
        # PES particles that differ only in the output layers share one trunk forward per step
        self.particle_layers = (output_layer_names(self.net, self.meta_params)
                                if cfg.estimator == "pes" and cfg.batch_particles else None)
        self._particles: Dict[Tuple[int, ...], Tuple[Any, Dict]] = {}
        self.trajectories: List[Union[Trajectory, TrajectoryPair]] = self._draw_trajectories()
        self.step = 0
        self._warmed_up = False  # cfg.auxiliary_warmup done (kept in checkpoints)
        # meta-validation: the last step validated, the best score and its step
        self.validation: Dict[str, Optional[float]] = {"last_step": None, "best_score": None, "best_step": None}
        self._tasks: Dict[str, Tuple[Task, Optional[NeuralGraph]]] = {}
        if resume:
            self._load(self.run_dir / (CHECKPOINT if (self.run_dir / CHECKPOINT).is_file() else CARRY))

    # ------------------------------------------------------------------ pieces
    def _task(self, spec: TaskSpec) -> Tuple[Task, Optional[NeuralGraph]]:
        """The task of ``spec`` and its graph on the run's device (built, moved and
        precomputed once per task)."""
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in self._tasks:
            if len(self._tasks) > 64:
                self._tasks.clear()
            task = Task(spec, self.device)
            graph = NeuralGraph.from_module(task.module).to(self.device).precompute() if self.net.uses_graph else None
            self._tasks[key] = task, graph
        return self._tasks[key]

    def _particle_graph(self, graphs: Tuple[NeuralGraph, ...]):
        """The union of ``graphs`` for :func:`unroll_particles` and a feature workspace for it, kept
        while the particles stay the same."""
        key = tuple(id(g) for g in graphs)
        if key not in self._particles:
            if len(self._particles) > 16:  # compositions of past steps
                self._particles.clear()
            self._particles[key] = particle_graph(graphs), {}
        return self._particles[key]

    def _mine(self, i: int) -> bool:
        return i % self.world == self.rank

    def _draw_trajectories(self) -> List[Union[Trajectory, TrajectoryPair]]:
        return [_new_trajectory(self.suite, self.cfg, self.sampler) for _ in range(self.cfg.meta_batch)]

    def outer_step(self) -> Dict[str, float]:
        """One meta-parameter update; returns its metrics."""
        cfg = self.cfg
        for p in self.trainable:  # zeros, not None: every rank all-reduces every gradient
            p.grad = torch.zeros_like(p)
        if cfg.estimator == "pes":
            total, ended = self._pes_gradients()
        else:
            total, ended = self._tbptt_gradients()
        aux_grads, auxiliary = self._auxiliary_gradients()
        if self.world > 1:
            dist.all_reduce(total)
            dist.all_reduce(ended)  # every rank replaces the same trajectories at the same time
            for traj, flag in zip(self.trajectories, ended.tolist()):
                if flag:
                    traj.end()
            for grad in [p.grad for p in self.meta_params] + aux_grads:
                dist.all_reduce(grad)
        grad_norm = float(nn.utils.clip_grad_norm_(self.meta_params, cfg.clip))
        metrics = {"step": self.step + 1, "meta_loss": float(total), "grad_norm": grad_norm,
                   "lr": self.outer.param_groups[0]["lr"]}
        finite = math.isfinite(grad_norm)
        if aux_grads:  # clipped on their own: neither gradient's scale shrinks the other's
            aux_norm = _clip_in_place(aux_grads, cfg.clip)
            for p, grad in zip(self.aux_trainable, aux_grads):
                p.grad.add_(grad)
            finite = finite and math.isfinite(aux_norm)
            metrics.update({"aux_grad_norm": aux_norm, **{f"aux_{name}": loss for name, loss in auxiliary.items()}})
        if finite:  # a non-finite gradient skips the update (logged)
            self.outer.step()
        self.schedule.step()
        self.step += 1
        return metrics

    def _pes_gradients(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """PES's estimate of the meta-gradient, written into the net's ``.grad`` (this rank's
        pairs; the ranks' parts are summed by the caller). Returns the mean truncation loss and
        the flags of pairs that ended early."""
        cfg = self.cfg
        theta = flat_parameters(self.meta_params)
        self.perturbed.load_state_dict(self.net.state_dict())
        perturbed = _select(self.perturbed, cfg.meta_parameters)
        noise = antithetic_noise(len(self.trajectories), theta.numel(), cfg.pes_sigma, self.noise_sampler).to(theta)
        losses = torch.zeros(2, len(self.trajectories), device=self.device, dtype=theta.dtype)
        accumulated = torch.zeros(len(self.trajectories), theta.numel(), device=self.device, dtype=theta.dtype)
        ended = torch.zeros(len(self.trajectories), device=self.device)
        runs, references = [], {}  # runs: (pair, row, sign, task, graph, trajectory)
        for i, pair in enumerate(self.trajectories):
            if pair.done:
                pair = self.trajectories[i] = _new_trajectory(self.suite, cfg, self.sampler)
            if not self._mine(i):
                pair.advance_schedule(cfg.unroll)
                continue
            pair.noise = noise[i] if pair.noise is None or pair.step == 0 else pair.noise + noise[i]
            task, graph = self._task(pair.plus.spec)
            if pair.reference is not None:
                references[i] = unroll(self.net, task, None, pair.reference, cfg.unroll, lam=cfg.lam,
                                       base_rule=True, per_step=True)
            runs += [(i, 0, 1.0, task, graph, pair.plus), (i, 1, -1.0, task, graph, pair.minus)]
        flats = [theta + sign * noise[i] for i, _, sign, *_ in runs]
        if self.particle_layers is not None and runs:
            # one trunk forward per inner step for all particles whose graphs share a kernel frame
            # (a union pads every edge to its largest kernel: MLPs beside 5x5 CNNs would pay 25x)
            ratios = [None] * len(runs)
            groups: Dict[Tuple[int, int], List[int]] = {}
            for k, (*_, graph, _) in enumerate(runs):
                groups.setdefault(tuple(graph.kernel_shape), []).append(k)
            for members in groups.values():
                layers = output_layers(self.net, self.particle_layers, torch.stack([flats[k] for k in members]))
                union, workspace = self._particle_graph(tuple(runs[k][4] for k in members))
                group = unroll_particles(self.net, [(runs[k][3], runs[k][5]) for k in members], union, layers,
                                         cfg.unroll, lam=cfg.lam, workspace=workspace)
                for k, ratio in zip(members, group):
                    ratios[k] = ratio
        else:
            ratios = []
            for flat, (_, _, _, task, graph, traj) in zip(flats, runs):
                set_flat_parameters(perturbed, flat)
                ratios.append(unroll(self.perturbed, task, graph, traj, cfg.unroll, lam=cfg.lam, differentiable=False,
                                     per_step=True))
        for (i, row, *_), ratio in zip(runs, ratios):
            losses[row, i] = (relative_meta_loss(ratio, references[i], cfg.behind_weight, cfg.ahead_cap) if i in references
                              else ratio.mean())
        for i, pair in enumerate(self.trajectories):
            if not self._mine(i):
                continue
            if not bool(torch.isfinite(losses[:, i]).all()):  # a diverged run says nothing: drop the pair
                losses[:, i] = math.log(DIVERGED)
            accumulated[i] = pair.noise
            if pair.done:
                pair.end()
            ended[i] = float(pair.done)
        grad = pes_gradient(losses[0], losses[1], accumulated, cfg.pes_sigma, num_pairs=len(self.trajectories))
        offset = 0
        for p in self.meta_params:
            p.grad.copy_(grad[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return losses.mean(0).sum() / len(self.trajectories), ended

    def _tbptt_gradients(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Truncated backprop: meta-gradients of this rank's trajectories accumulated into the
        meta-parameters' ``.grad``; returns the meta-loss and the flags of trajectories that ended
        early."""
        cfg = self.cfg
        total = torch.zeros((), device=self.device)
        ended = torch.zeros(len(self.trajectories), device=self.device)  # diverged, so ended early
        for i, traj in enumerate(self.trajectories):
            if traj.done:
                traj = self.trajectories[i] = _new_trajectory(self.suite, cfg, self.sampler)
            if not self._mine(i):
                traj.advance_schedule(cfg.unroll)  # another rank unrolls it: keep the schedule in step
                continue
            task, graph = self._task(traj.spec)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.autocast):
                loss = unroll(self.net, task, graph, traj, cfg.unroll,
                              second_order=cfg.second_order, lam=cfg.lam) / cfg.meta_batch
            if torch.isfinite(loss):
                loss.backward(inputs=self.meta_params)
            total += loss.detach()
            ended[i] = float(traj.done)
        return total, ended

    def _auxiliary_gradients(self) -> Tuple[List[torch.Tensor], Dict[str, float]]:
        """The gradients of the weighted auxiliary losses for ``self.aux_trainable`` (computed on
        rank 0, zeros elsewhere: the all-reduce counts them once) and each unweighted loss;
        ``([], {})`` without auxiliary tasks."""
        if not len(self.auxiliary):
            return [], {}
        grads = [torch.zeros_like(p) for p in self.aux_trainable]
        auxiliary: Dict[str, float] = {}
        if self.rank == 0:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast):
                weighted, auxiliary = auxiliary_losses(self.auxiliary, self.net, self.auxiliary_sampler)
            if torch.isfinite(weighted):
                found = torch.autograd.grad(weighted, self.aux_trainable, allow_unused=True)
                grads = [g if g is not None else z for g, z in zip(found, grads)]
        return grads, auxiliary

    def validate_if_due(self) -> Optional[Dict[str, object]]:
        """Meta-validate the current network when ``cfg.validate_every`` says so and this step
        was not validated yet (rank 0); log it to ``validation.jsonl`` and keep the best network
        as ``best.pt``. Returns the logged row, or None."""
        cfg, state = self.cfg, self.validation
        if not cfg.validate_every or self.step % cfg.validate_every or self.rank != 0:
            return None
        if state["last_step"] is not None and self.step <= state["last_step"]:
            return None
        start = time.perf_counter()
        result = validate(self.net, cfg.validation_tasks, cfg.validation_steps, cfg.validation_seeds, lam=cfg.lam)
        score = selection_score(result, cfg.validation_metric, cfg.validation_margin)
        improved = state["best_score"] is None or score < state["best_score"]
        # every validated network is kept: a selection rule other than the run's can be applied later
        save_weights(self.net, validated_weights(self.run_dir, self.step), config=cfg.to_dict(),
                     outer_steps=self.step, validation_score=score)
        if improved:
            state["best_score"], state["best_step"] = score, self.step
            save_weights(self.net, self.run_dir / BEST, config=cfg.to_dict(), outer_steps=self.step,
                         validation_score=score)
        state["last_step"] = self.step
        row = {"step": self.step, "score": score, "metric": cfg.validation_metric, "mean": result["score"],
               "worst": result["worst"], "best": improved, "tasks": result["tasks"],
               "seconds": round(time.perf_counter() - start, 1)}
        with (self.run_dir / VALIDATION).open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def run(self, progress: bool = True, stop_after: Optional[int] = None) -> UpdateNet:
        """Train until ``cfg.outer_steps`` (or ``stop_after`` more steps, for tests and
        interrupted runs); checkpoints every ``cfg.checkpoint_every`` steps and at the end.
        Raises :class:`MetaTrainingDiverged` (after no further save) when the network's weights
        stop being finite."""
        if self.rank != 0:
            return self._run(progress, stop_after)
        with folder_lock(self.run_dir, "a meta-training run"):
            if self._overwrite:
                for name in RUN_FILES:
                    (self.run_dir / name).unlink(missing_ok=True)
                for old in (self.run_dir / VALIDATED).glob("step-*.pt"):
                    old.unlink()
                self._overwrite = False
            return self._run(progress, stop_after)

    def _run(self, progress: bool, stop_after: Optional[int]) -> UpdateNet:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        end = cfg.outer_steps if stop_after is None else min(cfg.outer_steps, self.step + stop_after)
        if cfg.auxiliary_warmup and not self._warmed_up:
            self._warm_up_auxiliary(progress)
        bar = tqdm(total=cfg.outer_steps, initial=self.step, disable=not progress or self.rank != 0,
                   desc=f"meta-train {cfg.net}", unit="step")
        self.validate_if_due()  # the initialisation's score, on a fresh run
        while self.step < end:
            start = time.perf_counter()
            metrics = self.outer_step()
            metrics["seconds"] = round(time.perf_counter() - start, 4)
            if not all(all_finite(p) for p in self.trainable):
                bar.close()
                raise MetaTrainingDiverged(
                    f"meta-training diverged at outer step {self.step}: the update network's weights are no longer "
                    f"finite (meta-loss {metrics['meta_loss']}); nothing was saved after the last checkpoint in "
                    f"{self.run_dir}; lower the outer lr or clip")
            bar.update(1)
            bar.set_postfix(meta_loss=f"{metrics['meta_loss']:.4f}")
            if self.rank == 0:
                with (self.run_dir / METRICS).open("a") as f:
                    f.write(json.dumps(metrics) + "\n")
            row = self.validate_if_due()
            if row is not None:
                bar.write(f"step {self.step}: validation score {row['score']:+.4f} (log loss ratio to Adam 1e-3; "
                          f"best {self.validation['best_score']:+.4f} at step {self.validation['best_step']})")
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.outer_steps:
                self.save()
        bar.close()
        if self.step == cfg.outer_steps and self.rank == 0:
            save_weights(self.net, self.run_dir / WEIGHTS, config=cfg.to_dict(), outer_steps=self.step)
            state = self.validation
            if state["best_step"] == 0 and state["last_step"]:
                warnings.warn(f"meta-training made no network better than its initialisation on the validation "
                              f"tasks: the best score ({state['best_score']:+.4f}) is step 0's; best.pt holds the "
                              f"untrained network", RuntimeWarning, stacklevel=2)
        return self.net

    def _warm_up_auxiliary(self, progress: bool) -> None:
        """``cfg.auxiliary_warmup`` steps of the auxiliary losses alone before the first outer step:
        Adam (``auxiliary_lr``, else ``lr``, no schedule) on what they train, gradients clipped
        to ``clip``; each step's losses and seconds go to ``auxiliary_warmup.jsonl``. The meta-parameters
        and the outer optimizer's state are not touched."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        optimizer = torch.optim.Adam(self.aux_trainable, lr=cfg.auxiliary_lr or cfg.lr)
        log = self.run_dir / AUXILIARY_WARMUP
        for step in tqdm(range(1, cfg.auxiliary_warmup + 1), desc="auxiliary warm-up", unit="step",
                         disable=not progress or self.rank != 0):
            start = time.perf_counter()
            grads, losses = self._auxiliary_gradients()
            if self.world > 1:
                for grad in grads:
                    dist.all_reduce(grad)
            norm = _clip_in_place(grads, cfg.clip)
            if not math.isfinite(norm):
                continue  # skipped, as a non-finite outer step is
            for p, grad in zip(self.aux_trainable, grads):
                p.grad = grad
            optimizer.step()
            if self.rank == 0:
                with log.open("a") as f:
                    f.write(json.dumps({"step": step, "grad_norm": norm,
                                        **{f"aux_{name}": loss for name, loss in losses.items()},
                                        "seconds": round(time.perf_counter() - start, 4)}) + "\n")
        for p in self.aux_trainable:
            p.grad = None
        self._warmed_up = True

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0; trajectories gathered from every rank)."""
        mine = {i: t.to_dict() for i, t in enumerate(self.trajectories) if self._mine(i)}
        if self.world > 1:
            gathered: List[Any] = [None] * self.world if self.rank == 0 else None
            dist.gather_object({i: _to_cpu(t) for i, t in mine.items()}, gathered, dst=0)
            if self.rank != 0:
                return
            mine = {i: t for part in gathered for i, t in part.items()}
        carry = self.compact_state()
        atomic_save(carry, self.run_dir / CARRY)
        blob = {**carry, "trajectories": [_to_cpu(mine[i]) if i in mine else self.trajectories[i].to_dict()
                                          for i in range(len(self.trajectories))]}
        atomic_save(blob, self.run_dir / CHECKPOINT)

    def compact_state(self) -> Dict[str, Any]:
        """Everything but the trajectories (small: no optimizee state): meta-parameters, outer
        optimizer and schedule, random streams, validation record. A run resumed from it draws
        new trajectories and goes on."""
        return {"step": self.step, "config": self.cfg.to_dict(), "net": self.net.state_dict(),
                "outer": self.outer.state_dict(), "schedule": self.schedule.state_dict(),
                "sampler": self.sampler.get_state(), "noise_sampler": self.noise_sampler.get_state(),
                "auxiliary": self.auxiliary.state_dict(), "auxiliary_sampler": self.auxiliary_sampler.get_state(),
                "auxiliary_warmed_up": self._warmed_up,
                "validation": dict(self.validation)}

    def _load(self, path: Path) -> None:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - truncated or foreign files fail in many ways
            raise ValueError(f"{path} is not a readable checkpoint of a meta-training run ({type(err).__name__}; "
                             f"truncated, or not written by this package)") from None
        # fields added after the checkpoint was written count as their defaults
        saved = {**MetaConfig().to_dict(), **blob["config"]}
        if saved != self.cfg.to_dict():
            changed = sorted(k for k in saved if saved[k] != self.cfg.to_dict().get(k))
            raise ValueError(f"{path} was written by a run with another config (differs in {', '.join(changed)}); "
                             f"use another run directory or the same config")
        self.net.load_state_dict(blob["net"])
        self.outer.load_state_dict(blob["outer"])
        self.schedule.load_state_dict(blob["schedule"])
        self.sampler.set_state(blob["sampler"])
        if "auxiliary" in blob:  # checkpoints written before auxiliary tasks existed have none
            missing = sorted(set(self.auxiliary.state_dict()) - set(blob["auxiliary"]))
            if missing:  # e.g. the INR task's standardisation, added after such runs began
                raise ValueError(f"{path} was written by an older version whose auxiliary tasks read their "
                                 f"networks otherwise (it lacks {', '.join(missing)}); its heads were trained on "
                                 f"other inputs, so start the run again in a new run directory")
            self.auxiliary.load_state_dict(blob["auxiliary"])
            self.auxiliary_sampler.set_state(blob["auxiliary_sampler"])
        # written before auxiliary_warmup existed: runs without one, where the flag means nothing
        self._warmed_up = bool(blob.get("auxiliary_warmed_up", False))
        if "noise_sampler" in blob:
            self.noise_sampler.set_state(blob["noise_sampler"])
            self.validation.update({k: blob["validation"][k] for k in self.validation})
        if "trajectories" in blob:
            kind = TrajectoryPair if self.cfg.estimator == "pes" else Trajectory
            self.trajectories = [kind.from_dict(t, self.device) for t in blob["trajectories"]]
        else:  # the compact state: trajectories are drawn anew from the restored task stream
            self.trajectories = self._draw_trajectories()
        self.step = blob["step"]
        for name in (METRICS, VALIDATION):
            log = self.run_dir / name
            if self.rank == 0 and log.is_file():  # drop what was logged after the checkpoint
                # torn lines (a kill mid-write) are not read back; rows are written as logged
                kept = [row for row in read_jsonl(log) if row.get("step", math.inf) <= self.step]
                atomic_write_text(log, "".join(json.dumps(row) + "\n" for row in kept))


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def meta_train(cfg: MetaConfig, run_dir: Union[str, Path], resume: bool = False, progress: bool = True,
               overwrite: bool = False) -> UpdateNet:
    """Meta-train ``cfg.net`` on ``cfg.suite``; returns the trained network (see :class:`MetaTrainer`)."""
    return MetaTrainer(cfg, run_dir, resume=resume, overwrite=overwrite).run(progress=progress)

"""A zoo of small trained CNNs of diverse architectures (the paper's "CNN Wild Park", on MNIST
and Fashion-MNIST): the data of generalization prediction.

Member ``i`` is drawn from its own generator (:func:`sample_member`): 2-5 conv layers of 4-32
channels, kernels 3/5/7, activation relu/gelu/tanh/sigmoid/leaky-relu/identity, skip connections
around shape-keeping layers or not, global average pooling and a linear classifier; AdamW with a
log-uniform learning rate and weight decay (or none), a log-uniform number of steps at batch
128. A few checkpoints per network are kept with their test accuracy (on the first
``eval_images`` test images). Splits go by network, never by checkpoint: ``i % 10`` in 0-6 is
train, 7 val, 8-9 test.

A zoo folder holds ``config.json`` (:class:`ZooSpec`) and ``member-<i:05d>.pt`` per network,
written atomically: ``make_zoo`` continues with the first missing member.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from l2o_graphs.cache import atomic_save, claim_folder, folder_lock
from l2o_graphs.data.images import data_root
from l2o_graphs.tasks.task import Task, TaskSpec
from l2o_graphs.tasks.train import Problem, train_problem

ZOO_ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "leaky_relu", "identity")
ZOO_KERNELS = (3, 5, 7)
ZOO_DATASETS = ("mnist", "fashion_mnist")


@dataclass(frozen=True)
class ZooSpec:
    """``count`` networks, trained ``steps`` (a log-uniform range) steps each, checkpoints at the
    ``checkpoints`` fractions of training (0 is the initialisation)."""

    count: int = 300
    steps: Tuple[int, int] = (200, 1000)
    checkpoints: Tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    eval_images: int = 2000
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.steps[0] <= self.steps[1]:
            raise ValueError(f"need count >= 1 and 1 <= steps[0] <= steps[1], got {self.count}, {self.steps}")
        if not self.checkpoints or any(not 0 <= f <= 1 for f in self.checkpoints):
            raise ValueError(f"checkpoints are fractions of training in [0, 1], got {self.checkpoints}")


def split_of(index: int) -> str:
    """The split of zoo member ``index`` (by network: all its checkpoints go together)."""
    r = index % 10
    return "train" if r < 7 else "val" if r == 7 else "test"


_SEED_PURPOSES = ("sample", "init", "batches")


def member_seed(spec: ZooSpec, index: int, purpose: str) -> int:
    """A seed of its own for each member and purpose (drawing the member, initialising it,
    ordering its batches): no two random streams of the zoo overlap."""
    return (spec.seed * 1_000_003 + index) * len(_SEED_PURPOSES) + _SEED_PURPOSES.index(purpose)


def sample_member(spec: ZooSpec, index: int) -> Dict[str, Any]:
    """The plain-data description of member ``index``: architecture (a
    :func:`~l2o_graphs.tasks.architectures.build_optimizee` dict), dataset and training."""
    gen = torch.Generator().manual_seed(member_seed(spec, index, "sample"))

    def choice(options: Sequence[Any]) -> Any:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    def log_uniform(lo: float, hi: float) -> float:
        return math.exp(math.log(lo) + float(torch.rand((), generator=gen)) * (math.log(hi) - math.log(lo)))

    depth = int(torch.randint(2, 6, (1,), generator=gen))
    channels = [int(c) for c in torch.randint(4, 33, (depth,), generator=gen)]
    architecture = {"kind": "cnn", "channels": channels, "kernel": choice(ZOO_KERNELS), "head": "pool",
                    "activation": choice(ZOO_ACTIVATIONS), "residual": bool(torch.rand((), generator=gen) < 0.5)}
    weight_decay = 0.0 if torch.rand((), generator=gen) < 0.3 else log_uniform(1e-5, 1e-2)
    return {"architecture": architecture, "dataset": choice(ZOO_DATASETS), "lr": log_uniform(1e-4, 1e-2),
            "weight_decay": weight_decay, "steps": round(log_uniform(*spec.steps)),
            "seed": member_seed(spec, index, "init"), "batch_seed": member_seed(spec, index, "batches")}


def train_member(member: Dict[str, Any], spec: ZooSpec) -> Dict[str, Any]:
    """Train one member; returns ``member`` and its ``checkpoints`` (``step``, ``params``,
    ``buffers``, ``test_acc``, ``test_loss``)."""
    task = Task(TaskSpec(member["architecture"], member["dataset"], spec.batch_size, member["seed"]))
    model = task.module
    params, _ = task.init_params()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    at = sorted({round(f * member["steps"]) for f in spec.checkpoints})
    checkpoints = []

    def checkpoint(step: int, model: nn.Module) -> None:
        if step in at:
            current = {n: p.detach().clone() for n, p in model.named_parameters()}
            buffers = {n: b.clone() for n, b in model.named_buffers()}
            loss, acc = task.evaluate(current, buffers, split="test", limit=spec.eval_images)
            checkpoints.append({"step": step, "params": current, "buffers": buffers, "test_acc": acc,
                                "test_loss": loss})

    train_problem(Problem(model, (task.train_x, task.train_y), None, spec.batch_size),
                  lambda m: torch.optim.AdamW(m.parameters(), lr=member["lr"], weight_decay=member["weight_decay"]),
                  member["steps"], member["seed"], batches=torch.Generator().manual_seed(member["batch_seed"]),
                  on_step=checkpoint, final_eval=False, stop_if_diverged=False)
    return {"member": json.dumps(member), "checkpoints": checkpoints}


def default_zoo_folder() -> Path:
    return data_root() / "zoo"


def make_zoo(spec: ZooSpec, folder: Union[str, Path, None] = None, progress: bool = True) -> Dict[str, float]:
    """Train the members of ``spec`` missing from ``folder``; returns ``trained``, ``seconds``.
    Raises ``ValueError`` when ``folder`` holds a zoo made with another spec."""
    folder = Path(folder) if folder is not None else default_zoo_folder()
    with folder_lock(folder, "a CNN zoo"):  # one writer at a time
        claim_folder(folder, asdict(spec), "a CNN zoo")
        todo = [i for i in range(spec.count) if not (folder / f"member-{i:05d}.pt").exists()]
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.count, initial=spec.count - len(todo), unit="net", desc="training the zoo",
                   disable=not progress)
        start = time.perf_counter()
        for i in todo:
            result = train_member(sample_member(spec, i), spec)
            atomic_save(result, folder / f"member-{i:05d}.pt")
            bar.update(1)
            bar.set_postfix(acc=f"{result['checkpoints'][-1]['test_acc']:.3f}")
        bar.close()
        return {"trained": len(todo), "seconds": time.perf_counter() - start}


class ZooEntry(NamedTuple):
    """One checkpoint of one zoo network."""

    member: int
    architecture: Dict[str, Any]
    step: int
    params: Dict[str, Tensor]
    test_acc: float


def load_zoo(folder: Union[str, Path], split: str, limit: Optional[int] = None) -> List[ZooEntry]:
    """Every checkpoint of the networks of ``split`` (``train``, ``val``, ``test``) in ``folder``.
    Raises ``FileNotFoundError`` when members are missing (the message says how to finish)."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no CNN zoo in {folder}: make one with `l2o-graphs zoo make`")
    config = json.loads(path.read_text())
    spec = ZooSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    members = [i for i in range(spec.count) if split_of(i) == split][:limit]
    missing = [i for i in members if not (folder / f"member-{i:05d}.pt").exists()]
    if missing:
        raise FileNotFoundError(f"the zoo in {folder} is incomplete: {len(missing)} {split} networks missing; "
                                "run `l2o-graphs zoo make` with the same settings to finish it")
    out = []
    for i in members:
        blob = torch.load(folder / f"member-{i:05d}.pt", weights_only=True)
        member = json.loads(blob["member"])
        out += [ZooEntry(i, member["architecture"], c["step"], c["params"], float(c["test_acc"]))
                for c in blob["checkpoints"]]
    return out

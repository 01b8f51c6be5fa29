"""INR sets: one fitted SIREN per image of MNIST or Fashion-MNIST, written in resumable shards.

A set lives in one folder (by default ``data_root() / "inrs" / <dataset>``, git-ignored):

- ``config.json``: what the set is made with (:class:`InrSetSpec`);
- ``<split>-<k:05d>.pt``: shard ``k`` of a split, a dict of tensors: ``params`` ``{name: [n,
  ...]}`` (the names of :class:`~l2o_graphs.inr.siren.Siren`), ``label`` ``[n]``, ``psnr`` ``[n]``
  (dB) and ``source_index`` ``[n]`` (the image's index in its source split).

Splits follow the source images, as in the paper: ``train`` is source-train images ``[0,
55000)``, ``val`` is ``[55000, 60000)``, ``test`` the source test set; a set of ``n`` per split
takes the first ``n`` of each range. Every shard is written to a temporary file and renamed, so
an interrupted ``make_inr_set`` continues with the first missing shard, and every INR has its own
seed, so a resumed set equals one made in one go. Processes claim shards before fitting them, so
several can make one set at once.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from l2o_graphs.cache import atomic_save, claim_folder, claim_piece, folder_lock
from l2o_graphs.data import load_images
from l2o_graphs.data.images import data_root
from l2o_graphs.inr.fit import FIT_LR, FIT_STEPS, fit_sirens
from l2o_graphs.inr.siren import INIT_SCHEMES

# split -> (source split, first index, end index)
SPLITS: Dict[str, Tuple[str, int, int]] = {"train": ("train", 0, 55_000), "val": ("train", 55_000, 60_000),
                                           "test": ("test", 0, 10_000)}
INR_DATASETS = ("mnist", "fashion_mnist")
_SEED_STRIDE = 1_000_000  # per-INR seed: seed * stride + source offset + source index
CLAIM_POLL_SECONDS = 2.0
"""How often :func:`make_inr_set` looks again at shards that other processes are fitting."""
_SOURCE_OFFSET = {"train": 0, "test": 100_000}


@dataclass(frozen=True)
class InrSetSpec:
    """What an INR set is made of and how it is fitted.

    ``counts``: INRs per split (``train``, ``val``, ``test``); ``steps``, ``lr``, ``init``,
    ``stop_psnr``: the fit (see :func:`~l2o_graphs.inr.fit.fit_sirens`); ``seed``: base of the
    per-INR seeds; ``shard_size``: INRs per shard (and per batched fit). :meth:`of_protocol`
    gives the settings of a named protocol (:data:`PROTOCOLS`); :attr:`protocol` names the one a
    spec follows."""

    dataset: str
    counts: Dict[str, int] = field(default_factory=lambda: {"train": 55_000, "val": 5_000, "test": 10_000})
    steps: int = FIT_STEPS
    lr: float = FIT_LR
    seed: int = 0
    shard_size: int = 256
    init: str = "siren"
    stop_psnr: Optional[float] = None

    @classmethod
    def of_protocol(cls, protocol: str, dataset: str, **settings: object) -> "InrSetSpec":
        """The spec of ``protocol`` (a name in :data:`PROTOCOLS`) for ``dataset``; ``settings``
        (counts, seed, shard size, or any fit setting) override it."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown INR protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        return cls(dataset, **{**PROTOCOLS[protocol], **settings})

    @property
    def protocol(self) -> str:
        """The name in :data:`PROTOCOLS` whose fit settings this spec has, else ``"custom"``."""
        fit = {key: getattr(self, key) for key in FIT_SETTINGS}
        return next((name for name, settings in PROTOCOLS.items() if settings == fit), "custom")

    def to_config(self) -> Dict[str, object]:
        """What ``config.json`` records: every field, but ``init`` and ``stop_psnr`` only when they
        differ from their defaults, so sets made before those fields existed still match."""
        config = asdict(self)
        for f in fields(self):
            if f.name in ("init", "stop_psnr") and config[f.name] == f.default:
                del config[f.name]
        return config

    def __post_init__(self) -> None:
        if self.dataset not in INR_DATASETS:
            raise ValueError(f"INR sets are made from {', '.join(INR_DATASETS)}, not {self.dataset!r}")
        for split, count in self.counts.items():
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r} in counts; splits are {', '.join(SPLITS)}")
            _, lo, hi = SPLITS[split]
            if not 0 <= count <= hi - lo:
                raise ValueError(f"counts[{split!r}] = {count}: the {split} split has {hi - lo} images")
        if self.steps < 0 or self.shard_size < 1:
            raise ValueError("steps must be >= 0 and shard_size >= 1")
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"unknown SIREN initialisation {self.init!r}; choose one of {', '.join(INIT_SCHEMES)}")


FIT_SETTINGS = ("steps", "lr", "init", "stop_psnr")
"""The fields of :class:`InrSetSpec` that say how each INR is fitted: what a protocol sets."""
PROTOCOLS: Dict[str, Dict[str, object]] = {
    "default": {"steps": FIT_STEPS, "lr": FIT_LR, "init": "siren", "stop_psnr": None},
    # DWSNets' INR sets (AvivNavon/DWSNets, issue #6 and nn/inr.py), also used by the neural-graphs
    # paper: Adam at 5e-4 for up to 1,000 steps, each INR stopped once it reaches 40 dB, their
    # SIREN initialisation; one seed per image (whether theirs shared one is not stated)
    "dwsnets": {"steps": 1000, "lr": 5e-4, "init": "dwsnets", "stop_psnr": 40.0},
}
"""Named ways of fitting an INR set (:meth:`InrSetSpec.of_protocol`)."""


class InrSet(NamedTuple):
    """One split of an INR set: ``params`` ``{name: [n, ...]}``, ``label`` ``[n]``, ``psnr``
    ``[n]`` (dB), ``source_index`` ``[n]``."""

    params: Dict[str, Tensor]
    label: Tensor
    psnr: Tensor
    source_index: Tensor


def default_folder(dataset: str) -> Path:
    """``data_root() / "inrs" / dataset``."""
    return data_root() / "inrs" / dataset


def _shards(spec: InrSetSpec) -> List[Tuple[str, str, range]]:
    """``(file name, source split, source indices)`` of every shard, in order."""
    out = []
    for split, count in spec.counts.items():
        source, lo, _ = SPLITS[split]
        for k, start in enumerate(range(0, count, spec.shard_size)):
            out.append((f"{split}-{k:05d}.pt", source, range(lo + start, lo + min(count, start + spec.shard_size))))
    return out


def make_inr_set(spec: InrSetSpec, folder: Union[str, Path, None] = None, progress: bool = True,
                 images: Optional[Callable[[str, str], Tuple[Tensor, Tensor]]] = None,
                 workers: int = 1, device: Union[str, torch.device] = "cpu",
                 compile: bool = False) -> Dict[str, float]:
    """Fit the INRs of ``spec`` into ``folder`` (default :func:`default_folder`), skipping the
    shards already there; on ``device`` (shards are saved on the CPU; another device changes a
    fit by floating-point rounding only, so a set continued elsewhere differs from one made in
    one place by no more than that).

    Each shard is claimed before it is fitted (:func:`~l2o_graphs.cache.claim_piece`), so several
    processes can make one set together: ``workers > 1`` starts ``workers - 1`` more processes
    (each with ``torch.get_num_threads() // workers`` threads, at least one), and running the
    same call in other processes, on this machine or on one sharing the folder, does the same.
    Every such call returns once the whole set is written: a shard another process holds is
    waited for (polled every :data:`CLAIM_POLL_SECONDS`), and fitted by this call if that process
    ends without writing it. ``compile`` fits through ``torch.compile``
    (:func:`~l2o_graphs.inr.fit.fit_sirens`; a change by rounding only, like ``device``).
    ``images(dataset, source_split) -> (images [N, 1, H, W], labels [N])`` defaults to
    :func:`~l2o_graphs.data.load_images` (with ``workers > 1`` it must be picklable). Returns
    ``fitted`` (INRs fitted by this call and its workers), ``seconds`` and ``inrs_per_second``.
    Raises ``ValueError`` when ``folder`` holds a set made with another spec."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    folder = Path(folder) if folder is not None else default_folder(spec.dataset)
    with folder_lock(folder, "an INR set"):  # the config is written once, and checked by every maker
        claim_folder(folder, spec.to_config(), "an INR set")
    start = time.perf_counter()
    if workers == 1:
        fitted = _fit_shards(spec, folder, progress, images, device=device, compile=compile)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        before = torch.get_num_threads()
        threads = max(1, before // workers)
        try:
            with ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
                others = [pool.submit(_fit_shards, spec, folder, False, images, threads, device, compile)
                          for _ in range(workers - 1)]
                fitted = _fit_shards(spec, folder, progress, images, threads, device, compile)
                fitted += sum(job.result() for job in others)
        finally:
            torch.set_num_threads(before)  # the caller's setting, whatever this process used
    seconds = time.perf_counter() - start
    return {"fitted": fitted, "seconds": seconds, "inrs_per_second": fitted / seconds if fitted else 0.0}


def _fit_shards(spec: InrSetSpec, folder: Path, progress: bool,
                images: Optional[Callable[[str, str], Tuple[Tensor, Tensor]]],
                threads: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                compile: bool = False) -> int:
    """Fit every missing shard of ``spec`` in ``folder`` that no other process has claimed;
    returns the number of INRs fitted."""
    if threads is not None:
        torch.set_num_threads(threads)
    load = images or load_images
    shards = _shards(spec)
    total = sum(len(idx) for _, _, idx in shards)

    def present() -> int:
        return sum(len(idx) for name, _, idx in shards if (folder / name).exists())

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=present(), unit="INR", desc=f"fitting {spec.dataset} INRs",
               disable=not progress)
    sources: Dict[str, Tuple[Tensor, Tensor]] = {}
    fitted = 0
    # passes over the missing shards until none is: a shard another process holds is waited for,
    # and fitted here if that process ends without writing it (its claim then falls free)
    while missing := [shard for shard in shards if not (folder / shard[0]).exists()]:
        progressed = False
        for name, source, indices in missing:
            with claim_piece(folder / name) as claimed:
                if not claimed or (folder / name).exists():  # another process fits it, or has
                    continue
                if source not in sources:
                    sources[source] = load(spec.dataset, source)
                source_images, source_labels = sources[source]
                index = torch.tensor(list(indices), dtype=torch.long)
                seeds = [spec.seed * _SEED_STRIDE + _SOURCE_OFFSET[source] + i for i in indices]
                params, psnr = fit_sirens(source_images[index].to(device), seeds, spec.steps, spec.lr, spec.init,
                                          spec.stop_psnr, compile=compile)
                payload = {"params": {key: p.cpu() for key, p in params.items()}, "label": source_labels[index],
                           "psnr": psnr.cpu(), "source_index": index}
                atomic_save(payload, folder / name)
            fitted += len(indices)
            progressed = True
            bar.update(present() - bar.n)
            bar.set_postfix(psnr=f"{float(psnr.mean()):.1f} dB")
        if not progressed:
            time.sleep(CLAIM_POLL_SECONDS)
            bar.update(present() - bar.n)
    bar.close()
    return fitted


def inr_set_spec(folder: Union[str, Path]) -> InrSetSpec:
    """The spec the INR set in ``folder`` was made with (``FileNotFoundError`` without one)."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"no INR set in {folder}: make one with `l2o-graphs inr make`")
    return InrSetSpec(**json.loads(path.read_text()))


def load_inr_set(folder: Union[str, Path], split: str, protocol: Optional[str] = None) -> InrSet:
    """Load one split of the INR set in ``folder``; with ``protocol``, only a set made by that
    protocol (:data:`PROTOCOLS`): another is a ``ValueError`` naming both.

    Raises ``FileNotFoundError`` when the folder holds no set or the split is incomplete (the
    message says how many shards are missing and how to finish them)."""
    folder = Path(folder)
    spec = inr_set_spec(folder)
    if protocol is not None and spec.protocol != protocol:
        raise ValueError(f"the INR set in {folder} was made by the {spec.protocol!r} protocol, not {protocol!r} "
                         f"(steps {spec.steps}, lr {spec.lr:g}, init {spec.init}, stop at {spec.stop_psnr} dB)")
    if split not in spec.counts:
        raise ValueError(f"the INR set in {folder} has no {split!r} split (it has {', '.join(spec.counts)})")
    names = [name for name, _, _ in _shards(spec) if name.startswith(split + "-")]
    missing = [n for n in names if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(f"the INR set in {folder} is incomplete: {len(missing)} of {len(names)} "
                                f"{split} shards missing; run `l2o-graphs inr make` with the same settings "
                                "to finish it")
    parts = [torch.load(folder / n, weights_only=True) for n in names]
    if not parts:
        empty = {k: torch.empty(0) for k in ("label", "psnr", "source_index")}
        return InrSet({}, empty["label"].long(), empty["psnr"], empty["source_index"].long())
    params = {k: torch.cat([p["params"][k] for p in parts]) for k in parts[0]["params"]}
    return InrSet(params, *(torch.cat([p[k] for p in parts]) for k in ("label", "psnr", "source_index")))

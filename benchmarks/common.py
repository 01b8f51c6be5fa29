"""Helpers shared by the benchmark scripts: machine description, timing, result files."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Dict

import torch

from l2o_graphs.machine import describe_machine as machine  # noqa: F401  (what the scripts record as "machine")

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(fn: Callable[[], object], repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA synchronised when available)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cpu_slug(info: Dict[str, object]) -> str:
    """The CPU model of :func:`machine` as a file-name part, e.g. ``amd-epyc`` or ``intel-xeon``
    (trademark marks and the words "processor" and "cpu" left out)."""
    name = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b", " ", str(info["cpu"]).lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:24]


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--threads`` (torch CPU threads) and ``--tag`` (suffix of result names)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tag", default="", help="suffix of the result file names")


def parse_run_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parser.parse_args()`` with ``--threads`` (from :func:`add_run_options`) applied to torch."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def write_result(name: str, payload: Dict[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path

"""Will a graph optimizer fit? Its peak extra memory, estimated from parameter shapes alone and
checked against what the device has before the neural graph or any state is allocated."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

PEAK_BYTES_PER_POSITION = 240
"""Peak extra bytes per position (see :func:`graph_positions`) while the graph is built and the
first step runs: topology, state, feature workspace and the update network's activations. Set
above what ``benchmarks/optimizer_memory.py`` measured (``optimizer_memory_<cpu>.json``)."""


def graph_positions(shapes: Iterable[Sequence[int]]) -> int:
    """How many positions the graph tensors have for parameters of these shapes: each element
    of a 0-D or 1-D parameter, and for every weight ``[out, in, *kernel]`` its ``out * in`` edges
    times the largest kernel area of the model (every edge carries the common kernel frame)."""
    shapes = [tuple(s) for s in shapes]
    kernel = max([math.prod(s[2:]) for s in shapes if len(s) > 2] + [1])
    return sum(s[0] * s[1] * kernel if len(s) >= 2 else math.prod(s) for s in shapes)


def _read_int(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes(device: torch.device) -> Optional[int]:
    """Bytes that can still be allocated on ``device``: free CUDA memory, or on the CPU the
    smaller of the system's available memory and what the process's cgroup limit leaves; None
    where this cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        cap, used = _read_int(Path("/sys/fs/cgroup") / limit), _read_int(Path("/sys/fs/cgroup") / usage)
        if cap is not None and used is not None and cap < 1 << 60:  # v1 reports "no limit" as a huge number
            found.append(max(0, cap - used))
    return min(found) if found else None


def check_fits(shapes: Iterable[Sequence[int]], device: torch.device, what: str = "NeuralGraphOptimizer") -> None:
    """Raise ``MemoryError`` when the estimated peak (``PEAK_BYTES_PER_POSITION`` per
    :func:`graph_positions`) exceeds :func:`available_bytes` of ``device``; nothing is allocated."""
    available = available_bytes(device)
    if available is None:
        return
    positions = graph_positions(shapes)
    needed = positions * PEAK_BYTES_PER_POSITION
    if needed > available:
        gib = 1 << 30
        raise MemoryError(
            f"{what} needs about {needed / gib:.1f} GiB of extra memory at its peak ({positions:,} graph positions x "
            f"{PEAK_BYTES_PER_POSITION} bytes: topology, state, feature workspace and the update network's "
            f"activations), but only {available / gib:.1f} GiB is available on {device}; use it on part of the "
            f"model (parameter groups) or on a larger device, or pass check_memory=False to try anyway")

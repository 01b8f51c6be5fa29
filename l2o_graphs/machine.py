"""What produced a measurement: the machine's CPU model, cores, torch threads and GPU."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Dict, Mapping

import torch


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform``'s answer where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(gpu: bool = True) -> Dict[str, Any]:
    """``{"cpu", "cores", "torch_threads", "torch", "python"}``, plus ``"gpu"`` (the name of CUDA
    device 0) where torch sees one and ``gpu`` asks for it (naming it initialises CUDA: a process
    that computes on the CPU passes False)."""
    info: Dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": torch.__version__, "python": platform.python_version()}
    if gpu and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_label(info: Mapping[str, Any], gpu: bool = True) -> str:
    """A short label of :func:`describe_machine`'s ``info``, e.g. ``"AMD EPYC 7B13 (2 cores),
    1 thread"``; with ``gpu`` its GPU is named first where it has one."""
    threads = info.get("torch_threads")
    label = f"{info['cpu']} ({info.get('cores', '?')} cores)"
    if threads is not None:
        label += f", {threads} thread{'s' if threads != 1 else ''}"
    if gpu and info.get("gpu"):
        label = f"{info['gpu']}; {label}"
    return label

"""How much per-element work runs at once.

The learned update runs small MLPs once per parameter element. On a CPU the work is cut into
chunks whose temporaries (a few hundred KiB to a few MiB) stay in cache and are reused by the
allocator instead of being page-faulted in fresh for every op of a million-element tensor; on a
GPU large chunks keep the number of kernel launches small.
"""
from __future__ import annotations

from typing import Iterator, Tuple

import torch

CPU_CHUNK_ELEMENTS = 1 << 16
GPU_CHUNK_ELEMENTS = 1 << 24


def chunk_elements(device: torch.device) -> int:
    """Elements (rows times width) per chunk on ``device``."""
    return CPU_CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS


def row_ranges(num_rows: int, rows_per_chunk: int) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` ranges covering ``num_rows`` (one empty range when it is 0)."""
    step = max(1, rows_per_chunk)
    for start in range(0, max(num_rows, 1), step):
        yield start, min(num_rows, start + step)

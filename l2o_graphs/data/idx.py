"""Reader for the IDX format of MNIST-style datasets (optionally gzip-compressed)."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np


class DatasetCorruptError(RuntimeError):
    """A dataset file exists but cannot be read as what it claims to be."""


_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (``.gz`` files are decompressed).

    Raises:
        DatasetCorruptError: truncated or corrupted compression, a bad magic number, or a
            payload whose size does not match the header.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (EOFError, OSError, zlib.error) as err:
        raise DatasetCorruptError(f"{path}: cannot be read ({err}); the file is truncated or corrupted, "
                                  f"delete it and install or download it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DatasetCorruptError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetCorruptError(f"{path}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetCorruptError(f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
                                  f"{len(raw) - header} bytes of data; the file is truncated or corrupted")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)

"""Folders that commands build in pieces and resume (INR sets, CNN zoos, meta-training runs,
sweeps), and the two rules they share.

Every file is written whole or not at all (:func:`atomic_save`: a temporary file of a unique name
in the same folder, then a rename), and one process at a time writes a folder
(:func:`folder_lock`: an exclusive ``flock`` on ``<folder>/.lock``, released by the kernel when its
process dies), or, where a folder is made of independent pieces, one process at a time writes a
piece (:func:`claim_piece`, the same kind of lock per piece). A folder of generated data also
holds ``config.json``, the settings it is made with (:func:`claim_folder`)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Union

import torch

try:  # POSIX; elsewhere folders are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Union[str, Path], what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if needed) for the block.

    Raises :class:`FolderBusy` naming the folder and the holder's process id when another process
    holds it: two writers on one folder would interleave their files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    handle = open(folder / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderBusy(f"{folder} is in use by another process (pid {holder}) writing {what}; wait for it "
                             f"to end or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


@contextlib.contextmanager
def claim_piece(path: Union[str, Path]) -> Iterator[bool]:
    """Claim the right to write the file ``path`` for the block: yields ``True`` when this process
    holds the claim (an exclusive ``flock`` on ``.<name>.lock`` beside it, released by the kernel if
    the process dies, so a dead writer's piece is claimed again), ``False`` when another process
    holds it. Several processes can so build one folder together, each writing the pieces it
    claims; check that the piece is still missing after claiming it (another process may have
    finished it in between)."""
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    if fcntl is None:  # pragma: no cover
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)  # a process that opened it before sees the piece written
    finally:
        handle.close()


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: Union[str, Path]) -> None:
    """``torch.save`` to ``path`` through a uniquely named temporary file and a rename."""
    _atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named temporary file and a rename."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def claim_folder(folder: Path, config: Dict[str, Any], what: str) -> None:
    """Create ``folder`` with ``config.json``, or check that the one there equals ``config``.

    Raises ``ValueError`` naming both settings when the folder was made with others."""
    path = folder / "config.json"
    config = json.loads(json.dumps(config))
    if path.exists():
        found = json.loads(path.read_text())
        if found != config:
            raise ValueError(f"{folder} holds {what} made with {found}, not {config}; "
                             "choose another folder or delete this one")
        return
    atomic_write_text(path, json.dumps(config, indent=2) + "\n")


def read_jsonl(path: Union[str, Path]) -> List[Dict[str, Any]]:
    """The rows of a JSON-lines log; a line that does not parse (the torn last line of a process
    killed while writing) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows

"""The results database of a sweep: one SQLite file in the run directory.

Tables: ``sweep`` (the sweep definition the directory was first run with), ``trials`` (one row
per finished or failed trial, keyed by :attr:`Trial.key`, with the digest of its meaning and its
result as JSON) and ``running`` (trials started and not yet recorded, with the process that runs
them: a row left by a killed process marks a trial to rerun from its start). Only the process that
runs the sweep writes; workers return results to it.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from l2o_graphs.sweep.spec import SweepSpec, Trial

DATABASE = "results.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS sweep (id INTEGER PRIMARY KEY CHECK (id = 0), definition TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY, task TEXT NOT NULL, optimizer TEXT NOT NULL, setting TEXT NOT NULL,
    seed INTEGER NOT NULL, meaning TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    result TEXT, error TEXT, wall_s REAL, finished REAL NOT NULL);
CREATE TABLE IF NOT EXISTS running (key TEXT PRIMARY KEY, host TEXT, pid INTEGER, started REAL NOT NULL);
"""


@dataclass
class Record:
    """One row of ``trials``."""

    trial: Trial
    meaning: str
    status: str
    result: Optional[Dict[str, Any]]
    error: Optional[str]
    wall_s: Optional[float]


class SweepStore:
    """The results database of the run directory ``run_dir`` (created on first use)."""

    def __init__(self, run_dir: Union[str, Path]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DATABASE

    def _connect(self) -> sqlite3.Connection:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.executescript(SCHEMA)
        return connection

    def exists(self) -> bool:
        return self.path.is_file()

    # -------------------------------------------------------------------------- the definition
    def definition(self) -> Optional[Dict[str, Any]]:
        """The sweep definition stored by the first run (None before)."""
        if not self.exists():
            return None
        with closing(self._connect()) as db:
            row = db.execute("SELECT definition FROM sweep WHERE id = 0").fetchone()
        return None if row is None else json.loads(row[0])

    def set_definition(self, spec: SweepSpec) -> None:
        """Store ``spec`` as the sweep's definition (the latest run's: trials it adds are reported)."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO sweep (id, definition) VALUES (0, ?)", (json.dumps(spec.to_dict()),))

    # -------------------------------------------------------------------------- trials
    def records(self) -> List[Record]:
        if not self.exists():
            return []
        with closing(self._connect()) as db:
            rows = db.execute("SELECT task, optimizer, setting, seed, meaning, status, result, error, wall_s "
                              "FROM trials ORDER BY rowid").fetchall()
        return [Record(Trial(task, opt, json.loads(setting), seed), meaning, status,
                       None if result is None else json.loads(result), error, wall_s)
                for task, opt, setting, seed, meaning, status, result, error, wall_s in rows]

    def set_meanings(self, meanings: Dict[str, str]) -> None:
        """Rewrite the recorded meaning of finished trials, ``{key: meaning}`` (a digest upgraded
        to the current version; the result is left alone), in one transaction."""
        with closing(self._connect()) as db, db:
            db.executemany("UPDATE trials SET meaning = ? WHERE key = ? AND status = 'done'",
                           [(meaning, key) for key, meaning in meanings.items()])

    def record(self, trial: Trial, meaning: str, result: Optional[Dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        """Write ``trial``'s outcome (``result``, or ``error`` for a failed trial) and clear its
        running mark, in one transaction. A finished trial is never written twice (the primary
        key refuses it); a failed one is replaced when a rerun succeeds or fails again."""
        status = "failed" if error is not None else "done"
        with closing(self._connect()) as db, db:
            previous = db.execute("SELECT status FROM trials WHERE key = ?", (trial.key,)).fetchone()
            if previous is not None and previous[0] == "done":
                raise ValueError(f"trial {trial} is already recorded")
            db.execute("DELETE FROM trials WHERE key = ?", (trial.key,))
            db.execute("INSERT INTO trials (key, task, optimizer, setting, seed, meaning, status, result, error, "
                       "wall_s, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (trial.key, trial.task, trial.optimizer, json.dumps(trial.setting, sort_keys=True),
                        trial.seed, meaning, status, None if result is None else json.dumps(result), error,
                        None if result is None else result.get("wall_s"), time.time()))
            db.execute("DELETE FROM running WHERE key = ?", (trial.key,))

    def mark_running(self, trial: Trial, pid: Optional[int] = None) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO running (key, host, pid, started) VALUES (?, ?, ?, ?)",
                       (trial.key, socket.gethostname(), pid or os.getpid(), time.time()))

    def running(self) -> Dict[str, Dict[str, Any]]:
        """``{trial key: {"host", "pid", "started", "alive"}}`` of trials marked as running;
        ``alive`` is False when the process that runs the sweep is gone (on this host)."""
        if not self.exists():
            return {}
        with closing(self._connect()) as db:
            rows = db.execute("SELECT key, host, pid, started FROM running").fetchall()
        return {key: {"host": host, "pid": pid, "started": started,
                      "alive": host != socket.gethostname() or _alive(pid)} for key, host, pid, started in rows}

    def clear_running(self) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iter_done(records: List[Record]) -> Iterator[Record]:
    return (r for r in records if r.status == "done")

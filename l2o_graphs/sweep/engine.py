"""Running a sweep's trials: a pool of local worker processes (the default) or a Ray cluster, both
through :func:`~l2o_graphs.sweep.trial.run_trial` and into the same results database.

A rerun of the same sweep continues: finished trials are skipped, trials whose process died are
run again from their start, failed trials are retried. A sweep file that changed the meaning of a
finished trial (its task, optimizer, weights file, steps or curve spacing) is refused.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from l2o_graphs.cache import folder_lock
from l2o_graphs.sweep.spec import SweepError, SweepSpec, Trial
from l2o_graphs.sweep.store import SweepStore
from l2o_graphs.sweep.trial import run_trial

Outcome = Tuple[Trial, Optional[Dict[str, Any]], Optional[str]]  # (trial, result, error)


def upgrade_meanings(store: SweepStore) -> int:
    """Rewrite the finished trials recorded under an earlier version of
    :meth:`SweepSpec.meaning` with the current one, as the definition the directory holds reads
    them (a record its definition does not recognise is left alone); returns how many. The
    earlier versions digested more than decides a result (the weights' path, the optimizer's
    name, its whole grid), so a sweep file that only adds grid points can be compared with them."""
    definition = store.definition()
    if definition is None:
        return 0
    stored = SweepSpec.from_dict(definition)
    tasks, optimizers = {t.name for t in stored.tasks}, {o.name for o in stored.optimizers}
    upgraded = {}
    for record in store.records():
        trial = record.trial
        if record.status != "done" or trial.task not in tasks or trial.optimizer not in optimizers:
            continue
        current = stored.meaning(trial)
        if record.meaning != current and stored.means(trial, record.meaning):
            upgraded[trial.key] = current
    if upgraded:
        store.set_meanings(upgraded)
    return len(upgraded)


def pending_trials(spec: SweepSpec, store: SweepStore) -> Tuple[List[Trial], int]:
    """The trials of ``spec`` still to run and how many are already done (records of an earlier
    meaning version upgraded first, :func:`upgrade_meanings`). Raises :class:`SweepError` when a
    finished trial was recorded under another meaning."""
    upgrade_meanings(store)
    done = {}
    for record in store.records():
        if record.status == "done":
            done[record.trial.key] = record
    trials = spec.trials()
    changed = [t for t in trials if t.key in done and not spec.means(t, done[t.key].meaning)]
    if changed:
        raise SweepError(f"the sweep file changes what {len(changed)} finished trial(s) of {store.run_dir} mean "
                         f"(first: {changed[0]}; its task, optimizer, weights file, steps or curves differ): "
                         f"use another run directory, or restore the file")
    store.clear_running()  # marks of a killed run: those trials run again from their start
    return [t for t in trials if t.key not in done], sum(t.key in done for t in trials)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _local(spec: SweepSpec, trials: List[Trial], workers: int, threads: int,
           on_start: Callable[[Trial], None]) -> Iterator[Outcome]:
    """Trials in ``workers`` spawned processes, at most ``workers`` in flight."""
    payload = spec.to_dict()
    queue = list(reversed(trials))
    context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    pool = futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    flight: Dict[futures.Future, Trial] = {}
    finished_normally = False
    try:
        while queue or flight:
            while queue and len(flight) < workers:
                trial = queue.pop()
                on_start(trial)
                flight[pool.submit(run_trial, payload, _trial_dict(trial), threads)] = trial
            finished, _ = futures.wait(flight, return_when=futures.FIRST_COMPLETED)
            broken = False
            for future in finished:
                trial = flight.pop(future)
                try:
                    yield trial, future.result(), None
                except futures.process.BrokenProcessPool as err:
                    broken = True
                    yield trial, None, f"worker process died: {err}"
                except Exception as err:  # noqa: BLE001 - a failed trial is recorded, the sweep goes on
                    yield trial, None, _error(err)
            if broken:  # every trial in flight is lost with the pool: record them, start a new pool
                for future, trial in flight.items():
                    yield trial, None, "worker process died"
                flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
        finished_normally = True
    finally:
        if not finished_normally:  # interrupted (Ctrl-C, or the caller stopped): no orphan keeps training
            for child in multiprocessing.active_children():
                child.terminate()
        pool.shutdown(wait=finished_normally, cancel_futures=True)


def _ray(spec: SweepSpec, trials: List[Trial], address: str, threads: int,
         on_start: Callable[[Trial], None]) -> Iterator[Outcome]:
    """Trials as Ray tasks on the cluster at ``address`` (``auto``: the one this machine belongs
    to; ``local``: a new one on this machine), as many in flight as its CPUs allow."""
    try:
        import ray
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'l2o_graphs[ray]'") from None
    started = not ray.is_initialized()  # a connection made here is closed here
    if started:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        yield from _ray_trials(ray, spec, trials, threads, on_start)
    finally:
        if started:
            ray.shutdown()


def _ray_trials(ray, spec: SweepSpec, trials: List[Trial], threads: int,
                on_start: Callable[[Trial], None]) -> Iterator[Outcome]:
    remote = ray.remote(num_cpus=threads)(run_trial)
    slots = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    payload = ray.put(spec.to_dict())
    queue = list(reversed(trials))
    flight: Dict[Any, Trial] = {}
    while queue or flight:
        while queue and len(flight) < slots:
            trial = queue.pop()
            on_start(trial)
            flight[remote.remote(payload, _trial_dict(trial), threads)] = trial
        ready, _ = ray.wait(list(flight), num_returns=1)
        for ref in ready:
            trial = flight.pop(ref)
            try:
                yield trial, ray.get(ref), None
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if getattr(err, "cause", None) is not None else err
                yield trial, None, _error(cause)
            except ray.exceptions.RayError as err:
                yield trial, None, _error(err)


def _trial_dict(trial: Trial) -> Dict[str, Any]:
    return {"task": trial.task, "optimizer": trial.optimizer, "setting": trial.setting, "seed": trial.seed}


def run_sweep(spec: SweepSpec, run_dir: Union[str, Path], workers: int = 1, ray: Optional[str] = None,
              threads: int = 0, progress: bool = True,
              log: Callable[[str], None] = print) -> Dict[str, int]:
    """Run every trial of ``spec`` not yet done in ``run_dir``.

    Args:
        spec: the sweep.
        run_dir: its run directory (the results database, ``results.sqlite``, lives there).
        workers: local worker processes (ignored with ``ray``).
        ray: a Ray cluster address (``auto``, ``local`` or ``host:port``) instead of local workers.
        threads: torch CPU threads per trial; 0: the machine's cores divided among the workers
            (one per trial under Ray). Trials are bit-for-bit repeatable at a fixed thread count.
        progress: a progress bar over trials with ETA.
        log: where a failed trial's line goes.
    Returns:
        ``{"done": ..., "failed": ..., "skipped": ..., "wall_s": ...}`` for this call.
    Raises:
        SweepError: the sweep file changes what a finished trial means.
        FolderBusy: another process is running a sweep in ``run_dir``.
    """

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with folder_lock(run_dir, f"sweep {spec.name}"):  # a second process on the directory is refused
        return _run_locked(spec, SweepStore(run_dir), workers, ray, threads, progress, log)


def _run_locked(spec: SweepSpec, store: SweepStore, workers: int, ray: Optional[str], threads: int,
                progress: bool, log: Callable[[str], None]) -> Dict[str, int]:
    from tqdm.auto import tqdm

    trials, already = pending_trials(spec, store)
    store.set_definition(spec)
    if threads <= 0:
        threads = 1 if ray else max(1, (os.cpu_count() or 1) // workers)
    outcomes = (_ray(spec, trials, ray, threads, store.mark_running) if ray
                else _local(spec, trials, workers, threads, store.mark_running))
    counts = {"done": 0, "failed": 0, "skipped": already}
    bar = tqdm(total=already + len(trials), initial=already, disable=not progress, desc=f"sweep {spec.name}",
               unit="trial")
    start = time.perf_counter()
    try:
        for trial, result, error in outcomes:
            store.record(trial, spec.meaning(trial), result, error)
            counts["failed" if error else "done"] += 1
            if error:
                (bar.write if progress else log)(f"failed: {trial}: {error}")
            bar.update(1)
    finally:
        bar.close()
        store.clear_running()
    counts["wall_s"] = round(time.perf_counter() - start, 1)
    return counts


def merge_sweep(spec: SweepSpec, run_dir: Union[str, Path], source: Union[str, Path],
                renames: Optional[Mapping[str, str]] = None) -> Dict[str, int]:
    """Record in ``run_dir`` the finished trials of another run directory ``source`` that are
    trials of ``spec`` with the same meaning (same task, optimizer definition and weights, steps
    and curves: the same result a run would give), so that one sweep reports trials run under
    another sweep file. ``renames`` maps an optimizer name in ``source`` to the name ``spec``
    gives the same optimizer (say, a candidate that became the shipped default): its trials are
    recorded under the new name when their meaning matches. ``spec`` becomes ``run_dir``'s
    definition, as after a run.

    Returns ``{"merged": ..., "present": ... (already done here), "foreign": ... (not a trial
    of ``spec``, or another meaning)}``. Raises :class:`SweepError` as :func:`run_sweep` does
    when ``spec`` changes what a finished trial of ``run_dir`` means, or when ``renames`` names
    an optimizer ``spec`` does not have; ``FolderBusy`` when a sweep runs in either directory."""
    renames = dict(renames or {})
    names = {o.name for o in spec.optimizers}
    unknown = sorted(set(renames.values()) - names)
    if unknown:
        raise SweepError(f"cannot rename to {unknown[0]!r}: the sweep file has no such optimizer "
                         f"({', '.join(sorted(names))})")
    source_store = SweepStore(source)
    if source_store.definition() is None:
        raise SweepError(f"{source} holds no sweep (no {source_store.path.name})")
    with folder_lock(run_dir, f"sweep {spec.name}"), folder_lock(source, "a sweep merge"):
        upgrade_meanings(source_store)
        store = SweepStore(run_dir)
        pending, _ = pending_trials(spec, store)
        wanted = {t.key: t for t in pending}
        counts = {"merged": 0, "present": 0, "foreign": 0}
        ours = {t.key for t in spec.trials()}
        for record in source_store.records():
            if record.status != "done":
                continue
            old = record.trial
            key = Trial(old.task, renames.get(old.optimizer, old.optimizer), old.setting, old.seed).key
            trial = wanted.get(key)
            if trial is not None and spec.means(trial, record.meaning):
                store.record(trial, spec.meaning(trial), record.result)
                del wanted[trial.key]
                counts["merged"] += 1
            elif key in ours and trial is None:
                counts["present"] += 1
            else:
                counts["foreign"] += 1
        store.set_definition(spec)
    return counts


def sweep_status(run_dir: Union[str, Path]) -> Dict[str, Any]:
    """Counts of done, running, failed and left trials of the sweep last run in ``run_dir``, and
    the failed trials with their errors."""
    store = SweepStore(run_dir)
    definition = store.definition()
    if definition is None:
        raise SweepError(f"{run_dir} holds no sweep (no {store.path.name})")
    spec = SweepSpec.from_dict(definition)
    records = {r.trial.key: r for r in store.records()}
    running = store.running()
    counts = {"done": 0, "running": 0, "interrupted": 0, "failed": 0, "left": 0}
    failed = []
    for trial in spec.trials():
        record = records.get(trial.key)
        if record is not None and record.status == "done" and spec.means(trial, record.meaning):
            counts["done"] += 1
        elif trial.key in running:
            counts["running" if running[trial.key]["alive"] else "interrupted"] += 1
        elif record is not None and record.status == "failed":
            counts["failed"] += 1
            failed.append((str(trial), record.error))
        else:
            counts["left"] += 1
    return {"name": spec.name, "total": len(spec.trials()), **counts, "failed_trials": failed}

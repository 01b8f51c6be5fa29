"""Record a meta-training run in ``benchmarks/results/`` and, with ``--ship``, install its
weights as the package default.

Run: ``python benchmarks/record_meta_run.py runs/ng-gnn-default --command "l2o-graphs meta-train
--config configs/meta-default.yaml --run-dir runs/ng-gnn-default --threads 1" [--weights best |
--select mean-ahead --margin 0.05 | --step 160] [--ship] [--carry]``.
Writes ``meta_train_<run>.json`` (command, config, machine, wall time, first and last meta-losses,
the validation scores of a meta-validated run) and ``meta_curves_<run>.png``; ``--ship`` copies the
chosen weights (``weights.pt`` of a finished run, ``best.pt``, the best-validated network by the
run's own metric, or with ``--select`` the validated network another rule picks from the run's
validation rows, or with ``--step`` the one validated at that outer step) to
``l2o_graphs/pretrained/<net>.pt`` (refused over 2 MB); ``--carry`` copies the
run's compact state ``carry.pt`` to ``benchmarks/carry/<run>.pt``, from where a later session
carries the run on (copy it into an empty run directory, ``--resume``). The wall time is the sum
of the logged outer steps', validations' and auxiliary warm-up steps' seconds (rank 0's), so that
it counts the stretches of a resumed run and not the time between them; a warm-up logged before
its steps had seconds leaves ``wall_s`` without it and says so (``auxiliary_warmup.seconds``: None).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path
from typing import Optional

import torch

from common import RESULTS, machine, write_result

from l2o_graphs.cache import read_jsonl
from l2o_graphs.meta.plot import logged_auxiliary_keys, plot_run
from l2o_graphs.meta.config import META_LOSSES
from l2o_graphs.meta.trainer import AUXILIARY_WARMUP, validated_weights
from l2o_graphs.meta.validation import METRICS, select_validated
from l2o_graphs.optim.weights import PRETRAINED_DIR

MAX_SHIPPED_BYTES = 2 * 1024 * 1024


def tenths(rows: list, keys: list) -> dict:
    """``{f"{key}_first_tenth", f"{key}_last_tenth"}``: each key's mean over the first and the last
    tenth of ``rows`` (at least one row each), to 4 decimals."""
    tenth = max(1, len(rows) // 10)
    return {f"{key}_{part}_tenth": round(statistics.mean(r[key] for r in chunk), 4)
            for key in keys for part, chunk in (("first", rows[:tenth]), ("last", rows[-tenth:]))}


def warmup_summary(rows: list) -> dict:
    """The auxiliary warm-up's steps, seconds (None unless every step logged its own) and each
    auxiliary loss over its first and last tenth of steps."""
    seconds = sum(r["seconds"] for r in rows) if rows and all("seconds" in r for r in rows) else None
    return {"steps": len(rows), "seconds": None if seconds is None else round(seconds),
            **tenths(rows, logged_auxiliary_keys(rows))}


def warmup_record(run: Path, config: dict) -> Optional[dict]:
    """The run's auxiliary warm-up (:func:`warmup_summary` of its log); None for a run configured
    without one; steps and seconds None where one was configured but its log is not in ``run``
    (a run carried on from ``carry.pt`` in a new directory): unknown, not absent."""
    if not config.get("auxiliary_warmup"):
        return None
    log = run / AUXILIARY_WARMUP
    return warmup_summary(read_jsonl(log)) if log.is_file() else {"steps": None, "seconds": None}


def wall_seconds(rows: list, validation: Optional[list], warmup: Optional[dict]) -> int:
    """Seconds of the logged outer steps, validations and warm-up steps (a warm-up whose seconds
    are unknown adds none)."""
    return round(sum(r["seconds"] for r in rows) + sum(r["seconds"] for r in validation or [])
                 + ((warmup or {}).get("seconds") or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the exact command that produced the run")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--weights", choices=["final", "best"], default="final",
                        help="weights.pt (the finished run) or best.pt (the best-validated network so far)")
    chosen.add_argument("--select", choices=METRICS,
                        help="instead of --weights: the validated network this rule picks from the run's validation rows")
    chosen.add_argument("--step", type=int, help="instead of --weights: the network validated at this outer step")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="with --select mean-ahead: the lead over Adam (log loss ratio) every task must have")
    parser.add_argument("--ship", action="store_true", help="install the chosen weights as the package default")
    parser.add_argument("--carry", action="store_true", help="keep the run's carry.pt in benchmarks/carry/")
    args = parser.parse_args()
    run = args.run_dir
    validation = read_jsonl(run / "validation.jsonl") if (run / "validation.jsonl").is_file() else None
    selection = None
    if args.select:
        if not validation:
            raise SystemExit(f"{run} has no validation rows to select from")
        step = select_validated(validation, args.select, args.margin)
        weights = validated_weights(run, step)
        selection = {"metric": args.select, "margin": args.margin, "step": step}
    elif args.step is not None:
        weights = validated_weights(run, args.step)
        selection = {"metric": None, "margin": None, "step": args.step}
    else:
        weights = run / ("weights.pt" if args.weights == "final" else "best.pt")
    if not weights.is_file():
        raise SystemExit(f"{weights} does not exist"
                         + (": the run has not finished" if not selection and args.weights == "final" else "")
                         + (": the run validated no network at that step" if args.step is not None else ""))
    config = json.loads((run / "config.json").read_text())
    rows = read_jsonl(run / "metrics.jsonl")
    blob = torch.load(weights, weights_only=True)
    net = blob["net"]
    warmup = warmup_record(run, config)
    host = machine()
    del host["torch_threads"]  # this process's, not the run's: the command says what the run used
    payload = {
        "benchmark": "meta_train", "command": args.command, "machine": host, "config": config,
        "outer_steps": len(rows),
        "wall_s": wall_seconds(rows, validation, warmup),
        "auxiliary_warmup": warmup,
        "weights": f"validated step {selection['step']}" if selection else args.weights,
        "selection": selection,
        "weights_outer_steps": blob["metadata"].get("outer_steps"),
        "step_seconds_mean": round(statistics.mean(r["seconds"] for r in rows), 3),
        # inner steps unrolled per outer step: a trajectory per meta-batch slot, two under PES
        "inner_steps_per_second": round(config["meta_batch"] * config["unroll"]
                                        * (2 if config.get("estimator") == "pes" else 1)
                                        / statistics.mean(r["seconds"] for r in rows), 1),
        **tenths(rows, ["meta_loss"] + logged_auxiliary_keys(rows)),
        "weights_bytes": weights.stat().st_size,
        "validation": [{k: v for k, v in row.items() if k != "seconds"} for row in validation]
        if validation is not None else None,
        "note": f"meta-loss = {META_LOSSES[config.get('meta_loss', 'ratio')]}; lower is better",
    }
    print(f"wrote {write_result(f'meta_train_{run.name}.json', payload)}")
    shutil.copyfile(plot_run(run), RESULTS / f"meta_curves_{run.name}.png")
    if args.ship:
        if weights.stat().st_size > MAX_SHIPPED_BYTES:
            raise SystemExit(f"{weights} is {weights.stat().st_size} bytes, over the 2 MB the package ships")
        PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, PRETRAINED_DIR / f"{net}.pt")
        print(f"shipped {PRETRAINED_DIR / f'{net}.pt'}")
    if args.carry:
        carry = Path(__file__).resolve().parent / "carry" / f"{run.name}.pt"
        carry.parent.mkdir(exist_ok=True)
        shutil.copyfile(run / "carry.pt", carry)
        print(f"kept {carry} ({carry.stat().st_size} bytes): copy it to RUN_DIR/carry.pt and --resume")


if __name__ == "__main__":
    main()

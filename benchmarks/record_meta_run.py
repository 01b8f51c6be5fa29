"""Record a finished meta-training run in ``benchmarks/results/`` and, with ``--ship``, install
its weights as the package default.

Run: ``python benchmarks/record_meta_run.py runs/ng-gnn-default --command "l2o-graphs meta-train
--config configs/meta-default.yaml --run-dir runs/ng-gnn-default --threads 1" [--ship]``.
Writes ``meta_train_<run>.json`` (command, config, machine, wall time from the run directory's
file times, first and last meta-losses) and ``meta_curves_<run>.png``; ``--ship`` copies
``weights.pt`` to ``l2o_graphs/pretrained/<net>.pt`` (refused over 2 MB).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_result  # noqa: E402

from l2o_graphs.meta.plot import plot_run  # noqa: E402
from l2o_graphs.optim.weights import PRETRAINED_DIR  # noqa: E402

MAX_SHIPPED_BYTES = 2 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the exact command that produced the run")
    parser.add_argument("--ship", action="store_true", help="install weights.pt as the package default")
    args = parser.parse_args()
    run = args.run_dir
    weights = run / "weights.pt"
    if not weights.is_file():
        raise SystemExit(f"{weights} does not exist: the run has not finished")
    config = json.loads((run / "config.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    net = torch.load(weights, weights_only=True)["net"]
    tenth = max(1, len(rows) // 10)
    auxiliary = sorted({key for r in rows for key in r if key.startswith("aux_")})  # auxiliary task losses
    host = machine()
    del host["torch_threads"]  # this process's, not the run's: the command says what the run used
    payload = {
        "benchmark": "meta_train", "command": args.command, "machine": host, "config": config,
        "outer_steps": len(rows),
        "wall_s": round(weights.stat().st_mtime - (run / "config.json").stat().st_mtime),
        "step_seconds_mean": round(statistics.mean(r["seconds"] for r in rows), 3),
        "meta_loss_first_tenth": round(statistics.mean(r["meta_loss"] for r in rows[:tenth]), 4),
        "meta_loss_last_tenth": round(statistics.mean(r["meta_loss"] for r in rows[-tenth:]), 4),
        **{f"{key}_{part}_tenth": round(statistics.mean(r[key] for r in chunk), 4)
           for key in auxiliary for part, chunk in (("first", rows[:tenth]), ("last", rows[-tenth:]))},
        "weights_bytes": weights.stat().st_size,
        "note": "meta-loss = mean log(loss after an update / loss at the trajectory's start); lower is better",
    }
    print(f"wrote {write_result(f'meta_train_{run.name}.json', payload)}")
    shutil.copyfile(plot_run(run), RESULTS / f"meta_curves_{run.name}.png")
    if args.ship:
        if weights.stat().st_size > MAX_SHIPPED_BYTES:
            raise SystemExit(f"{weights} is {weights.stat().st_size} bytes, over the 2 MB the package ships")
        PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, PRETRAINED_DIR / f"{net}.pt")
        print(f"shipped {PRETRAINED_DIR / f'{net}.pt'}")


if __name__ == "__main__":
    main()

"""A learned optimizer's step multiplier (``lr``) scored on the meta-validation tasks.

Run: ``python benchmarks/validation_lr.py WEIGHTS [--lrs 1 2 3] [--seeds 2] [--steps 1000] [--tag NAME]``.

Scores the network at each multiplier with :func:`l2o_graphs.meta.validation.validate` (the mean
and worst over tasks of ``log(L / L_adam)``, Adam at 1e-3 on the same initialisations and
batches) on every validation task, which neither meta-training nor the held-out benchmark uses:
a multiplier chosen here is chosen without looking at the held-out tasks. Writes
``benchmarks/results/validation_lr_<machine>[_<tag>].json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.meta.validation import VALIDATION_TASKS, validate
from l2o_graphs.optim import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    add_run_options(parser)
    args = parse_run_args(parser)
    net = load_weights(args.weights)
    rows = []
    for lr in args.lrs:
        start = time.perf_counter()
        result = validate(net, list(VALIDATION_TASKS), args.steps, args.seeds, lr=lr)
        rows.append({"lr": lr, "mean": round(result["score"], 4), "worst": round(result["worst"], 4),
                     "tasks": {name: round(t["log_ratio"], 4) for name, t in result["tasks"].items()},
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"lr {lr:g}: mean {rows[-1]['mean']:+.4f}, worst {rows[-1]['worst']:+.4f} "
              f"({', '.join(f'{k} {v:+.3f}' for k, v in rows[-1]['tasks'].items())})", flush=True)
    info = machine()
    name = f"validation_lr_{cpu_slug(info)}{'_' + args.tag if args.tag else ''}.json"
    command = "python benchmarks/validation_lr.py " + " ".join(sys.argv[1:])
    path = write_result(name, {"benchmark": "validation_lr", "command": command.strip(), "machine": info,
                               "weights": str(args.weights), "steps": args.steps, "seeds": args.seeds, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

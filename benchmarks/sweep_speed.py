"""Speed of the sweep harness: ``benchmarks/sweeps/speed.yaml`` (3 small tasks x Adam, SGD and the
shipped NG-GNN x 3 learning rates x 2 seeds x 200 steps) with one and with two local workers.

Run: ``python benchmarks/sweep_speed.py [--repeats 1]`` (both cores idle). Reports each sweep's
wall time (worker start-up included), the ratio of two workers to one, and the harness's cost
per trial: the sweep's wall time with one worker minus the time spent inside the trials
(building the task and training), per trial. Writes
``benchmarks/results/sweep_speed_<machine>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_slug, machine, write_result

from l2o_graphs.sweep import load_sweep, run_sweep
from l2o_graphs.sweep.store import SweepStore

SWEEP = Path(__file__).resolve().parent / "sweeps" / "speed.yaml"


def timed_sweep(workers: int) -> dict:
    spec = load_sweep(SWEEP)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        counts = run_sweep(spec, run_dir, workers=workers, progress=False)
        wall = time.perf_counter() - start
        inside = [r.wall_s for r in SweepStore(run_dir).records()]
    if counts["failed"] or len(inside) != len(spec.trials()):
        raise SystemExit(f"the speed sweep did not finish cleanly: {counts}")
    return {"workers": workers, "trials": len(inside), "wall_s": round(wall, 2),
            "inside_trials_s": round(sum(inside), 2),
            "harness_s_per_trial": round((wall * workers - sum(inside)) / len(inside), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs = {workers: [timed_sweep(workers) for _ in range(args.repeats)] for workers in (1, 2)}
    median = {w: statistics.median(r["wall_s"] for r in rs) for w, rs in runs.items()}
    one = runs[1][0]
    payload = {"benchmark": "sweep_speed", "command": "python benchmarks/sweep_speed.py " + " ".join(sys.argv[1:]),
               "machine": machine(), "sweep": str(SWEEP.relative_to(SWEEP.parents[2])), "runs": runs,
               "wall_s_one_worker": median[1], "wall_s_two_workers": median[2],
               "two_over_one": round(median[2] / median[1], 3),
               "harness_s_per_trial": one["harness_s_per_trial"],
               "targets": {"two_workers_under_180_s": median[2] < 180, "two_over_one_at_most_0.6": median[2] / median[1]
                           <= 0.6, "harness_under_1_s_per_trial": one["harness_s_per_trial"] < 1.0}}
    for workers, rs in runs.items():
        for r in rs:
            print(f"{workers} worker(s): {r['trials']} trials in {r['wall_s']:.1f} s "
                  f"({r['inside_trials_s']:.1f} s inside trials; harness {r['harness_s_per_trial']:.3f} s/trial)")
    print(f"two workers / one: {payload['two_over_one']:.2f}; targets: {payload['targets']}")
    slug = cpu_slug(payload["machine"])
    print(f"wrote {write_result(f'sweep_speed_{slug}.json', payload)}")


if __name__ == "__main__":
    main()

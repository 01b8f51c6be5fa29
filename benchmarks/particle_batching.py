"""Inner steps per second of PES meta-training, particles unrolled together against one by one.

A PES outer step advances ``2 x pairs`` particles by ``unroll`` inner steps each. With the
meta-parameters restricted to the update network's output layers (the shipped recipe), the
particles can share one forward of the network's trunk per inner step over the union of their
graphs (``batch_particles: true``, :mod:`l2o_graphs.meta.particles`); otherwise each particle
runs its own forward. This builds two meta-trainers from the same config, one each way, and
times their outer steps alternately in one process (the machine's load then weighs on both
alike), for each suite asked for.

Reported per suite: ``inner_steps_per_s`` of each way (particle inner steps, ``2 x pairs x
unroll``, over the median outer step's seconds) and their ratio.

Run: ``OMP_NUM_THREADS=1 python benchmarks/particle_batching.py --threads 1``; writes
``benchmarks/results/particle_batching_<cpu>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.meta import MetaConfig, MetaTrainer


def measure(suite: str, pairs: int, unroll: int, repeats: int, seed: int) -> dict:
    base = dict(net="ng-gnn", net_config={"update": "adam-layer"}, suite=suite, estimator="pes",
                meta_parameters=["edge_dec_out", "node_dec_out"], outer_steps=repeats + 1, meta_batch=pairs,
                unroll=unroll, seed=seed, device="cpu")
    seconds = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {together: MetaTrainer(MetaConfig(**base, batch_particles=together), Path(tmp) / str(together))
                    for together in (True, False)}
        for trainer in trainers.values():
            trainer.outer_step()  # first step: tasks, graphs and union built
        for _ in range(repeats):
            for together, trainer in trainers.items():
                start = time.perf_counter()
                trainer.outer_step()
                seconds[together].append(time.perf_counter() - start)
    steps = 2 * pairs * unroll
    rate = {k: steps / statistics.median(v) for k, v in seconds.items()}
    return {"suite": suite, "pairs": pairs, "unroll": unroll, "particle_steps_per_outer_step": steps,
            "outer_step_s": {"together": [round(s, 3) for s in seconds[True]],
                             "one_by_one": [round(s, 3) for s in seconds[False]]},
            "inner_steps_per_s": {"together": round(rate[True], 1), "one_by_one": round(rate[False], 1)},
            "speedup": round(rate[True] / rate[False], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=["tiny", "small"])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--unroll", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    add_run_options(parser)
    args = parse_run_args(parser)
    info = machine()
    rows = [measure(name, args.pairs, args.unroll, args.repeats, args.seed) for name in args.suites]
    for row in rows:
        rate = row["inner_steps_per_s"]
        print(f"{row['suite']}: {rate['together']} inner steps/s together, {rate['one_by_one']} one by one "
              f"(x{row['speedup']})")
    name = f"particle_batching_{cpu_slug(info)}{'_' + args.tag if args.tag else ''}.json"
    command = "python benchmarks/particle_batching.py " + " ".join(sys.argv[1:])
    path = write_result(name, {"benchmark": "particle_batching", "command": command.strip(), "machine": info,
                               "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

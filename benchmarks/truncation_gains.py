"""What the relative meta-loss sees: a learned optimizer's gain over its base rule per truncation.

Run: ``python benchmarks/truncation_gains.py WEIGHTS [--suite small] [--tasks 6] [--length 500]
[--unroll 50] [--threads 1] [--tag NAME]``.

Draws ``--tasks`` tasks from a meta-training suite (with a stream of its own, not a run's), and
unrolls each as a PES pair would: the network's rule and its untrained form (Adam at 1e-3 for the
``adam-*`` rules) from the same initialisation on the same batches, ``--length`` steps in
truncations of ``--unroll``. Per truncation it records ``x``, the mean over its steps of
``log(L / L_base)`` (:func:`l2o_graphs.meta.unroll.relative_meta_loss` before its hinge and cap):
negative is ahead of the base rule. Writes ``benchmarks/results/truncation_gains_<machine>[_<tag>].json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.graph import NeuralGraph
from l2o_graphs.meta.unroll import TrajectoryPair, unroll
from l2o_graphs.optim import load_weights
from l2o_graphs.tasks.suites import load_suite
from l2o_graphs.tasks.task import Task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--suite", default="small")
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--unroll", type=int, default=50)
    add_run_options(parser)
    args = parse_run_args(parser)
    net = load_weights(args.weights)
    suite = load_suite(args.suite)
    sampler = torch.Generator().manual_seed(args.seed)
    rows = []
    for _ in range(args.tasks):
        spec = suite.sample(sampler)
        task = Task(spec)
        graph = NeuralGraph.from_module(task.module).precompute()
        pair = TrajectoryPair.new(spec, args.length, reference=True)
        gains = []
        for _ in range(args.length // args.unroll):
            base = unroll(net, task, None, pair.reference, args.unroll, base_rule=True, per_step=True)
            learned = unroll(net, task, graph, pair.plus, args.unroll, differentiable=False, per_step=True)
            gains.append(round(float((learned - base).mean()), 4))
        rows.append({"architecture": spec.architecture, "dataset": spec.dataset, "batch_size": spec.batch_size,
                     "truncation_gains": gains})
        print(f"{spec.architecture} {spec.dataset}: {' '.join(f'{g:+.3f}' for g in gains)}", flush=True)
    info = machine()
    name = f"truncation_gains_{cpu_slug(info)}{'_' + args.tag if args.tag else ''}.json"
    command = "python benchmarks/truncation_gains.py " + " ".join(sys.argv[1:])
    path = write_result(name, {"benchmark": "truncation_gains", "command": command.strip(), "machine": info,
                               "weights": str(args.weights), "suite": args.suite, "length": args.length,
                               "unroll": args.unroll, "seed": args.seed, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

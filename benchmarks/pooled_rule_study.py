"""What an ``adam-pooled`` or ``adam-layer`` network learned: its factors on Adam's step, and
whether the per-neuron part helps (meta-validation with and without it).

Run: ``python benchmarks/pooled_rule_study.py WEIGHTS [--seeds 3] [--steps 1000] [--tag NAME]``.

Both rules read the network's ``m`` output pooled over each tensor (``adam-layer``: over the
weight of the tensor's layer) for a per-tensor factor, and its ``d`` output pooled over each output
neuron for a per-neuron factor. Zeroing the
rows of both output layers that produce ``d`` removes the per-neuron factors exactly (each becomes
1) and leaves the per-layer ones as they are. Both networks are scored on every validation task
(:data:`l2o_graphs.meta.validation.VALIDATION_TASKS`, never the held-out benchmark) against Adam at
1e-3. While the full network runs, every step's factors are recorded per parameter shape
(``exp(B tanh(mean m))`` per tensor; the per-neuron factors' mean, min and max), averaged over
windows of the run. Writes ``benchmarks/results/pooled_rule_study_<machine>[_<tag>].json``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List

import torch

from common import cpu_slug, machine, parse_run_args, write_result

from l2o_graphs import rules
from l2o_graphs.meta.validation import VALIDATION_TASKS, validate
from l2o_graphs.optim import load_weights

WINDOWS = ((1, 10), (11, 100), (101, 1000), (1001, 10 ** 9))


POOLED_RULES = ("adam-pooled", "adam-layer")


@contextlib.contextmanager
def recorded_factors(rule: str) -> Iterator[Dict[str, Dict[str, List[float]]]]:
    """Within the block, ``rule`` (one of :data:`POOLED_RULES`) also records its factors:
    ``{"<shape> @ steps a-b": {"layer": [...], "neuron_mean": [...], "neuron_min": [...],
    "neuron_max": [...]}}``. (The registry entry is swapped for a recording copy and restored
    afterwards.)"""
    record: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    original = rules.RULES[rule]

    def recording(d, m, state):
        m_mean = rules.layer_mean(m, state)
        layer, neuron = (torch.exp(log_scale) for log_scale in rules.pooled_log_scales(d, m_mean))
        a, b = next(w for w in WINDOWS if w[0] <= state.updates <= w[1])
        entry = record[f"{'x'.join(map(str, d.shape))} @ steps {a}-{b}"]
        entry["layer"].append(float(layer))
        for key, value in (("neuron_mean", neuron.mean()), ("neuron_min", neuron.min()), ("neuron_max", neuron.max())):
            entry[key].append(float(value))
        return original.fn(d, m, state)

    rules.RULES[rule] = dataclasses.replace(original, fn=recording)
    try:
        yield record
    finally:
        rules.RULES[rule] = original


def _summary(entry: Dict[str, List[float]]) -> Dict[str, float]:
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {"layer": round(mean(entry["layer"]), 4), "neuron_mean": round(mean(entry["neuron_mean"]), 4),
            "neuron_min": round(min(entry["neuron_min"]), 4), "neuron_max": round(max(entry["neuron_max"]), 4)}


def without_neuron_scales(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose ``d`` output (channel 0 of both output layers) is zero."""
    ablated = copy.deepcopy(net)
    with torch.no_grad():
        for layer in (ablated.edge_dec_out, ablated.node_dec_out):
            layer.weight[0].zero_()
            layer.bias[0].zero_()
    return ablated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--tasks", nargs="+", default=list(VALIDATION_TASKS), choices=list(VALIDATION_TASKS))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tag", default="")
    args = parse_run_args(parser)
    net = load_weights(args.weights)
    if net.update_rule not in POOLED_RULES:
        raise SystemExit(f"{args.weights} uses the {net.update_rule!r} rule, not one of {', '.join(POOLED_RULES)}")
    start = time.perf_counter()
    results = {}
    with recorded_factors(net.update_rule) as record:
        results["full"] = validate(net, args.tasks, args.steps, args.seeds)
    factors = {key: _summary(entry) for key, entry in sorted(record.items())}
    results["no per-neuron scales"] = validate(without_neuron_scales(net), args.tasks, args.steps, args.seeds)
    for name in results:
        print(f"{name:<22} mean {results[name]['score']:+.4f}  worst {results[name]['worst']:+.4f}  " +
              "  ".join(f"{t}: {v['log_ratio']:+.3f}" for t, v in results[name]["tasks"].items()), flush=True)
    info = machine()
    for key, value in factors.items():
        print(f"{key:<28} {value}")
    payload = {"benchmark": "pooled_rule_study", "command": "python benchmarks/pooled_rule_study.py "
               + " ".join(sys.argv[1:]), "machine": info, "weights": str(args.weights), "steps": args.steps,
               "seeds": args.seeds, "score": "log(final train loss / Adam(1e-3)'s), mean over seeds",
               "wall_s": round(time.perf_counter() - start), "results": results,
               "factors": factors, "factors_note": "per parameter shape and window of steps over all "
               "validation tasks and seeds: mean per-tensor factor, mean/min/max per-neuron factor"}
    print("wrote", write_result(f"pooled_rule_study_{cpu_slug(info)}" + (f"_{args.tag}" if args.tag else "")
                                + ".json", payload))


if __name__ == "__main__":
    main()

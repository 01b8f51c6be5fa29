"""Does the per-neuron part of an ``adam-pooled`` network help? Meta-validation with and without it.

Run: ``python benchmarks/neuron_scale_ablation.py WEIGHTS [--seeds 3] [--steps 1000] [--tag NAME]``.

The ``adam-pooled`` rule reads the network's ``m`` output pooled over each tensor (a per-layer
factor) and its ``d`` output pooled over each output neuron (a per-neuron factor). Zeroing the
rows of both output layers that produce ``d`` removes the per-neuron factors exactly (each becomes
1) and leaves the per-layer ones as they are. Both networks are scored on every validation task
(:data:`l2o_graphs.meta.validation.VALIDATION_TASKS`, never the held-out benchmark) against Adam at
1e-3; writes ``benchmarks/results/neuron_scale_ablation_<machine>[_<tag>].json``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_slug, machine, write_result  # noqa: E402

from l2o_graphs.meta.validation import VALIDATION_TASKS, validate  # noqa: E402
from l2o_graphs.optim import load_weights  # noqa: E402


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_weights(args.weights)
    if net.update_rule != "adam-pooled":
        raise SystemExit(f"{args.weights} uses the {net.update_rule!r} rule, not 'adam-pooled'")
    start = time.perf_counter()
    results = {}
    for name, candidate in (("full", net), ("no per-neuron scales", without_neuron_scales(net))):
        results[name] = validate(candidate, args.tasks, args.steps, args.seeds)
        print(f"{name:<22} mean {results[name]['score']:+.4f}  worst {results[name]['worst']:+.4f}  " +
              "  ".join(f"{t}: {v['log_ratio']:+.3f}" for t, v in results[name]["tasks"].items()), flush=True)
    info = machine()
    payload = {"benchmark": "neuron_scale_ablation", "command": "python benchmarks/neuron_scale_ablation.py "
               + " ".join(sys.argv[1:]), "machine": info, "weights": str(args.weights), "steps": args.steps,
               "seeds": args.seeds, "score": "log(final train loss / Adam(1e-3)'s), mean over seeds",
               "wall_s": round(time.perf_counter() - start), "results": results}
    print("wrote", write_result(f"neuron_scale_ablation_{cpu_slug(info)}" + (f"_{args.tag}" if args.tag else "")
                                + ".json", payload))


if __name__ == "__main__":
    main()

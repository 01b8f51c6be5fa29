"""Can the learned optimizer's own trunk learn to read INR weights? The INR-classification
auxiliary task trained alone (no meta-training): the update network's trunk and the task's head,
Adam on the task's cross-entropy, random batches of the train split.

Run, after ``l2o-graphs inr make --dataset mnist --protocol dwsnets ...``:
``python benchmarks/aux_trunk_probe.py --folder DIR [--element-gain 4] [--own-rms] [--steps 800]
[--batch 32] [--threads 1] --tag NAME``. ``--own-rms`` reads each SIREN by its own tensors' RMS
(the optimizer's features) instead of the train split's per-tensor statistics (the task's
default). Writes ``benchmarks/results/aux_trunk_probe_<machine>_<tag>.json``: the running mean
loss every 25 steps (chance: ln 10 = 2.303) and the validation accuracy at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.inr import load_inr_set
from l2o_graphs.meta.auxiliary import build_auxiliary
from l2o_graphs.nn import build_net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="the INR set")
    parser.add_argument("--net", default="ng-gnn")
    parser.add_argument("--net-config", default='{"update": "adam-layer"}', help="JSON, as in a meta-training config")
    parser.add_argument("--element-gain", type=float, default=1.0)
    parser.add_argument("--own-rms", action="store_true", help="read each SIREN by its own tensors' RMS")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val", type=int, default=512, help="validation INRs scored at the end")
    add_run_options(parser)
    args = parse_run_args(parser)

    torch.manual_seed(args.seed)
    net = build_net(args.net, **json.loads(args.net_config), element_gain=args.element_gain)
    task = build_auxiliary({"inr-classification": {"folder": str(args.folder), "batch": args.batch}}, net,
                           torch.device("cpu"))["inr-classification"]
    standardize = None if args.own_rms else task.standardize
    optimizer = torch.optim.Adam(list(net.parameters()) + list(task.parameters()), lr=args.lr)
    sampler = torch.Generator().manual_seed(args.seed + 1)

    def logits(params, index):
        return torch.stack([task.readout(net, {n: p[i] for n, p in params.items()}, task.graph, standardize)
                            for i in index])

    curve, running, start = [], None, time.perf_counter()
    for step in range(1, args.steps + 1):
        index = torch.randint(len(task.labels), (args.batch,), generator=sampler).tolist()
        loss = torch.nn.functional.cross_entropy(logits(task.params, index), task.labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 25 == 0:
            curve.append({"step": step, "loss": round(running, 4)})
            print(step, f"{running:.3f}", flush=True)
    val = load_inr_set(args.folder, "val")
    count = min(args.val, len(val.label))
    with torch.no_grad():
        predicted = torch.cat([logits(val.params, range(a, min(count, a + 64))).argmax(1) for a in range(0, count, 64)])
    accuracy = float((predicted == val.label[:count]).float().mean())
    first_below = next((row["step"] for row in curve if row["loss"] < math.log(10) - 0.1), None)
    payload = {"benchmark": "aux_trunk_probe", "command": "python benchmarks/aux_trunk_probe.py " + " ".join(sys.argv[1:]),
               "machine": machine(), "inr_set": json.loads((args.folder / "config.json").read_text()),
               "settings": {k: getattr(args, k) for k in ("net", "net_config", "element_gain", "own_rms", "steps",
                                                           "batch", "lr", "seed")},
               "chance_loss": math.log(10), "first_step_below_chance_by_0.1": first_below,
               "final_running_loss": curve[-1]["loss"] if curve else None, "val_inrs": count, "val_accuracy": accuracy,
               "seconds": round(time.perf_counter() - start), "curve": curve}
    name = f"aux_trunk_probe_{cpu_slug(payload['machine'])}{'_' + args.tag if args.tag else ''}.json"
    print(f"wrote {write_result(name, payload)}: val accuracy {accuracy:.3f}, loss below chance - 0.1 from step "
          f"{first_below}")


if __name__ == "__main__":
    main()

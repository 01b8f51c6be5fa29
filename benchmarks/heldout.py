"""Learned optimizers against tuned Adam and SGD on held-out tasks that no meta-training used.

Run: ``python benchmarks/heldout.py --learned ng-gnn=l2o_graphs/pretrained/ng-gnn.pt [--steps 1000
--seeds 5] [--tasks ...] [--metasgd-steps N]``. Adam and SGD (momentum 0.9) are tuned per task over their learning-rate grids (best
final train loss, averaged over seeds). Writes ``benchmarks/results/heldout_<machine>.json`` (``heldout_<tasks>_<machine>.json`` for
a subset of the tasks) and
one loss-curve PNG per task (``heldout_<task>_<machine>.png``).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, cpu_slug, machine, write_result  # noqa: E402

from l2o_graphs import NeuralGraphOptimizer  # noqa: E402
from l2o_graphs.meta.metasgd import MetaSGDOptimizer, meta_train_metasgd  # noqa: E402
from l2o_graphs.plots import plot_loss_curves  # noqa: E402
from l2o_graphs.tasks.train import HELDOUT_TASKS as HELDOUT, train_with  # noqa: E402

LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
SGD_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# Adam moves each of MetaSGD's per-element rates by about its learning rate per outer step, so
# 1e-2 lets them random-walk to negative and large values within a few hundred steps
METASGD_OUTER_GRID = (1e-3, 1e-4)


def _summary(runs: List[Dict]) -> Dict:
    """Mean and standard deviation over seeds; runs whose loss is not finite (diverged) are
    counted and left out."""
    out: Dict[str, object] = {}
    for key in ("train_loss", "test_acc"):
        values = [r[key] for r in runs if math.isfinite(r["train_loss"])]
        out[key] = {"mean": statistics.mean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    out["diverged"] = sum(not math.isfinite(r["train_loss"]) for r in runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learned", nargs="*", default=[], metavar="NAME=WEIGHTS",
                        help="learned optimizers to evaluate, e.g. ng-gnn=l2o_graphs/pretrained/ng-gnn.pt")
    parser.add_argument("--tasks", nargs="+", default=list(HELDOUT), choices=list(HELDOUT))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--baselines", nargs="*", default=["adam", "sgd-momentum"], choices=["adam", "sgd-momentum"],
                        help="tuned baselines to sweep (none: --baselines with no value)")
    parser.add_argument("--metasgd-steps", type=int, default=0,
                        help="meta-train learn2learn's MetaSGD for this many outer steps per task (its rates "
                             "fit one architecture) on MNIST and Fashion-MNIST, then evaluate it; 0 skips it")
    parser.add_argument("--metasgd-outer-lrs", type=float, nargs="+", default=list(METASGD_OUTER_GRID),
                        help="outer Adam learning rates MetaSGD is meta-trained with, one run each; the best "
                             "is kept by the baselines' criterion")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tag", default="", help="suffix of the result file names (runs split in parts)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    candidates: Dict[str, Dict[str, Callable]] = {}
    if "adam" in args.baselines:
        candidates["adam"] = {f"{lr:g}": (lambda lr: lambda m: torch.optim.Adam(m.parameters(), lr=lr))(lr)
                              for lr in LR_GRID}
    if "sgd-momentum" in args.baselines:
        candidates["sgd-momentum"] = {f"{lr:g}": (lambda lr: lambda m: torch.optim.SGD(m.parameters(), lr=lr,
                                                                                      momentum=0.9))(lr)
                                      for lr in SGD_GRID}
    for item in args.learned:
        name, _, path = item.partition("=")
        net = torch.load(path, weights_only=True)["net"]
        candidates[name] = {"learned": (lambda path, net: lambda m: NeuralGraphOptimizer(m, weights=path, net=net))(path, net)}

    info = machine()
    slug = cpu_slug(info)
    results: Dict[str, Dict] = {}
    start = time.perf_counter()
    for task_name in args.tasks:
        spec = HELDOUT[task_name]
        results[task_name] = {}
        task_candidates = dict(candidates)
        if args.metasgd_steps:
            task_candidates["metasgd"] = {}
            for outer_lr in args.metasgd_outer_lrs:
                lrs = meta_train_metasgd(spec, ["mnist", "fashion_mnist"], outer_steps=args.metasgd_steps,
                                         outer_lr=outer_lr)
                task_candidates["metasgd"][f"outer {outer_lr:g}"] = (
                    lambda m, lrs=lrs: MetaSGDOptimizer(m.parameters(), lrs))
        for opt_name, settings in task_candidates.items():
            best = None
            for setting, make in settings.items():
                runs = [train_with(spec, make, args.steps, seed) for seed in range(args.seeds)]
                summary = _summary(runs)
                loss, acc = summary["train_loss"], summary["test_acc"]
                shown = (f"train loss {loss['mean']:.4f} ± {loss['std']:.4f}  test acc {acc['mean']:.4f}"
                         if loss["mean"] is not None else "diverged")
                print(f"{task_name:<26} {opt_name:<13} {setting:<8} {shown} ({summary['diverged']} diverged) "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
                score = math.inf if loss["mean"] is None or summary["diverged"] else loss["mean"]
                if best is None or score < best[0]:
                    best = (score, setting, summary, runs)
            _, setting, summary, runs = best
            curve = [statistics.mean(c) for c in zip(*(r["curve"] for r in runs if math.isfinite(r["train_loss"])))]
            results[task_name][opt_name] = {"setting": setting, **summary, "mean_curve": curve}
        plot_loss_curves({f"{task_name}: mean over {args.seeds} seeds": {
            f"{name} ({r['setting']})": r["mean_curve"] for name, r in results[task_name].items()}},
            RESULTS / f"heldout_{task_name}_{slug}{'_' + args.tag if args.tag else ''}.png")
    payload = {"benchmark": "heldout", "command": "python benchmarks/heldout.py " + " ".join(sys.argv[1:]),
               "machine": info, "steps": args.steps, "metasgd_outer_steps": args.metasgd_steps, "seeds": args.seeds, "wall_s": round(time.perf_counter() - start),
               "tuning": {"adam": list(LR_GRID), "sgd-momentum": list(SGD_GRID),
                          "metasgd_outer_lr": args.metasgd_outer_lrs if args.metasgd_steps else None,
                          "criterion": "lowest mean final train loss over seeds"},
               "results": {t: {o: {k: v for k, v in r.items() if k != "mean_curve"} for o, r in res.items()}
                           for t, res in results.items()}}
    tasks = "" if len(args.tasks) == len(HELDOUT) else "_" + "+".join(args.tasks)
    name = f"heldout{tasks}_{slug}{'_' + args.tag if args.tag else ''}.json"
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()

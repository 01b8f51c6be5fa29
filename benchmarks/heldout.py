"""Learned optimizers against tuned Adam and SGD on held-out tasks that no meta-training used.

Run: ``python benchmarks/heldout.py --learned ng-gnn=l2o_graphs/pretrained/ng-gnn.pt [--learned-lrs 0.1 0.3 1 3 10
30 100] [--steps 1000 --seeds 5] [--tasks ...] [--reuse FILE ...]``.

Every optimizer runs each of its settings (Adam and SGD: learning rates; a learned optimizer: its
``lr`` multiplier, 1 when untuned) for ``--seeds`` initialisations; the best setting per task is
the one with the lowest mean final train loss. For every learned optimizer the untuned setting
(``lr=1``) is reported beside the tuned one, with its **speedup over tuned Adam** in
learned_optimization's convention (:mod:`l2o_graphs.speedup`) on the train-loss curve measured
every ``--eval-every`` steps. ``--reuse`` takes every optimizer's runs found in earlier result
files of the same steps, seeds and curve spacing instead of rerunning them (a sweep split over
several processes or sessions is merged this way, settings of one optimizer from several files
included; with nothing left to run it only reports).

Writes ``benchmarks/results/heldout_<machine>[_<tag>].json`` and one loss-curve PNG per task.

The held-out benchmark is now the sweep ``benchmarks/sweeps/heldout.yaml`` (``l2o-graphs sweep run``:
one results database, resumable, any optimizer; the README's table is its report;
``tests/test_sweep.py`` checks that its trials are this script's). This script is kept so that the
earlier tables of the README that name its commands (the rules shipped before, the baselines,
Meta-SGD) can be rerun as they were made; new measurements belong in a sweep file.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from common import RESULTS, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.meta.metasgd import meta_train_metasgd
from l2o_graphs.optim import MetaSGDOptimizer
from l2o_graphs.plots import plot_loss_curves
from l2o_graphs.speedup import speedup
from l2o_graphs.tasks.train import HELDOUT_TASKS as HELDOUT, eval_schedule, train_with

LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SGD_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BASELINES = ("adam", "sgd-momentum")
# Adam moves each of MetaSGD's per-element rates by about its learning rate per outer step, so
# 1e-2 lets them random-walk to negative and large values within a few hundred steps
METASGD_OUTER_GRID = (1e-3, 1e-4)


def _summary(runs: List[Dict]) -> Dict:
    """Mean and standard deviation over seeds, the seed-mean curves; runs whose loss is not
    finite (diverged) are counted and left out of the means."""
    finite = [r for r in runs if math.isfinite(r["train_loss"])]
    out: Dict[str, object] = {}
    for key in ("train_loss", "test_acc"):
        values = [r[key] for r in finite]
        out[key] = {"mean": statistics.mean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    out["diverged"] = len(runs) - len(finite)
    # curves of every seed (NaN after a divergence), averaged: a diverged seed makes the mean NaN
    out["eval_curve"] = [statistics.mean(c) for c in zip(*(r["eval_curve"] for r in runs))]
    out["mean_curve"] = [statistics.mean(c) for c in zip(*(r["curve"] for r in finite))] if finite else []
    return out


def _score(summary: Dict) -> float:
    loss = summary["train_loss"]["mean"]
    return math.inf if loss is None or summary["diverged"] else loss


def _merge(first: Dict, second: Dict) -> Dict:
    """One optimizer's entries from two runs over different settings, as one: the union of the
    settings (the second's win where both ran one), the best of them and its curve."""
    settings = {**first["settings"], **second["settings"]}
    best = min(settings, key=lambda s: _score(settings[s]))
    source = second if best in second["settings"] else first
    return {"best": best, "best_curve": source["best_curve"], "settings": settings, "learned": first["learned"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learned", nargs="*", default=[], metavar="NAME=WEIGHTS",
                        help="learned optimizers to evaluate, e.g. ng-gnn=l2o_graphs/pretrained/ng-gnn.pt")
    parser.add_argument("--learned-lrs", type=float, nargs="+", default=[1.0],
                        help="lr multipliers a learned optimizer is tuned over (1 = untuned, always included)")
    parser.add_argument("--tasks", nargs="+", default=list(HELDOUT), choices=list(HELDOUT))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=50, help="steps between points of the train-loss curve")
    parser.add_argument("--adam-lrs", type=float, nargs="+", default=list(LR_GRID),
                        help="Adam's learning-rate grid (default: 7 log-spaced rates, 1e-4 to 1e-1)")
    parser.add_argument("--baselines", nargs="*", default=["adam"], choices=list(BASELINES),
                        help="tuned baselines to sweep (none: --baselines with no value)")
    parser.add_argument("--reuse", type=Path, nargs="+", default=[],
                        help="result JSONs of this script with the same steps, seeds and --eval-every: the "
                             "optimizers they hold are taken from them instead of rerun")
    parser.add_argument("--metasgd-steps", type=int, default=0,
                        help="meta-train learn2learn's MetaSGD for this many outer steps per task (its rates "
                             "fit one architecture) on MNIST and Fashion-MNIST, then evaluate it; 0 skips it")
    parser.add_argument("--metasgd-outer-lrs", type=float, nargs="+", default=list(METASGD_OUTER_GRID))
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parse_run_args(parser)
    learned_lrs = sorted({1.0, *args.learned_lrs})
    candidates: Dict[str, Dict[str, Callable]] = {}
    if "adam" in args.baselines:
        candidates["adam"] = {f"{lr:g}": (lambda lr: lambda m: torch.optim.Adam(m.parameters(), lr=lr))(lr)
                              for lr in args.adam_lrs}
    if "sgd-momentum" in args.baselines:
        candidates["sgd-momentum"] = {f"{lr:g}": (lambda lr: lambda m: torch.optim.SGD(m.parameters(), lr=lr,
                                                                                      momentum=0.9))(lr)
                                      for lr in SGD_GRID}
    for item in args.learned:
        name, _, path = item.partition("=")
        net = torch.load(path, weights_only=True)["net"]
        candidates[name] = {f"lr={lr:g}": (lambda path, net, lr: lambda m: NeuralGraphOptimizer(
            m, weights=path, net=net, lr=lr))(path, net, lr) for lr in learned_lrs}
    reused: Dict[str, Dict[str, Dict]] = {}
    for path in args.reuse:
        earlier = json.loads(path.read_text())
        if (earlier["steps"], earlier["seeds"], earlier.get("eval_every")) != (args.steps, args.seeds, args.eval_every):
            raise SystemExit(f"{path} has steps/seeds/eval_every {earlier['steps']}/{earlier['seeds']}/"
                             f"{earlier.get('eval_every')}, this run {args.steps}/{args.seeds}/{args.eval_every}")
        for task_name, by_optimizer in earlier["results"].items():
            for opt_name, entry in by_optimizer.items():
                merged = reused.setdefault(task_name, {})
                merged[opt_name] = _merge(merged[opt_name], entry) if opt_name in merged else entry

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
        for opt_name, entry in reused.get(task_name, {}).items():
            results[task_name][opt_name] = entry
            left = {k: v for k, v in task_candidates.pop(opt_name, {}).items() if k not in entry["settings"]}
            if left:  # settings no earlier file ran: run them and merge
                task_candidates[opt_name] = left
        for opt_name, settings in task_candidates.items():
            by_setting = {}
            for setting, make in settings.items():
                runs = [train_with(spec, make, args.steps, seed, eval_every=args.eval_every)
                        for seed in range(args.seeds)]
                summary = by_setting[setting] = _summary(runs)
                loss, acc = summary["train_loss"], summary["test_acc"]
                shown = (f"train loss {loss['mean']:.4f} ± {loss['std']:.4f}  test acc {acc['mean']:.4f}"
                         if loss["mean"] is not None else "diverged")
                print(f"{task_name:<26} {opt_name:<13} {setting:<8} {shown} ({summary['diverged']} diverged) "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
            best = min(by_setting, key=lambda s: _score(by_setting[s]))
            entry = {"best": best, "best_curve": by_setting[best]["mean_curve"], "settings": by_setting,
                     "learned": opt_name not in BASELINES + ("metasgd",)}
            earlier = results[task_name].get(opt_name)
            results[task_name][opt_name] = _merge(earlier, entry) if earlier else entry
        adam = results[task_name].get("adam")
        eval_steps = eval_schedule(args.steps, args.eval_every)
        for name in [n for n, r in results[task_name].items() if r.get("learned")]:
            entry = results[task_name][name]
            for key, setting in (("untuned", "lr=1"), ("tuned", entry["best"])):
                s = entry["settings"][setting]
                final = s["eval_curve"][-1] if s["eval_curve"] else math.nan
                entry[key] = {"setting": setting, "train_loss": s["train_loss"], "test_acc": s["test_acc"],
                              "diverged": s["diverged"], "final_eval_loss": final}
                mine = s["train_loss"]["mean"]
                if adam is not None and "0.001" in adam["settings"]:
                    ref = adam["settings"]["0.001"]["train_loss"]["mean"]
                    entry[key]["vs_adam_1e-3"] = None if mine is None else mine / ref
                tuned = adam is not None and len(adam["settings"]) > 1  # a grid, not one rate
                if tuned and math.isfinite(final):
                    curves = {lr: [v["eval_curve"]] for lr, v in adam["settings"].items()}
                    entry[key]["speedup_over_tuned_adam"] = speedup(curves, eval_steps, final)
                if tuned:
                    best_adam = adam["settings"][adam["best"]]["train_loss"]["mean"]
                    entry[key]["vs_tuned_adam"] = None if mine is None else mine / best_adam
        plot_loss_curves({f"{task_name}: mean over {args.seeds} seeds": {
            f"{name} ({r['best']})": r["best_curve"] for name, r in results[task_name].items()}},
            RESULTS / f"heldout_{task_name}_{slug}{'_' + args.tag if args.tag else ''}.png")
    payload = {"benchmark": "heldout", "command": "python benchmarks/heldout.py " + " ".join(sys.argv[1:]),
               "machine": info, "steps": args.steps, "seeds": args.seeds, "eval_every": args.eval_every,
               "metasgd_outer_steps": args.metasgd_steps, "wall_s": round(time.perf_counter() - start),
               "reused": [str(p) for p in args.reuse],
               "tuning": {"adam": list(args.adam_lrs), "sgd-momentum": list(SGD_GRID), "learned_lr": learned_lrs,
                          "metasgd_outer_lr": args.metasgd_outer_lrs if args.metasgd_steps else None,
                          "criterion": "lowest mean final train loss over seeds"},
               "results": {t: {o: {**r, "settings": {k: {kk: vv for kk, vv in v.items() if kk != "mean_curve"}
                                                       for k, v in r["settings"].items()}}
                               for o, r in res.items()} for t, res in results.items()}}
    speedups = {f"{t} {n}": r["untuned"].get("speedup_over_tuned_adam", "n/a")
                for t, res in results.items() for n, r in res.items() if r.get("learned")}
    if speedups:
        print("speedup over tuned Adam (untuned learned optimizer; None = beyond the horizon):", speedups)
    print(f"wrote {write_result(f'heldout_{slug}' + (f'_{args.tag}' if args.tag else '') + '.json', payload)}")


if __name__ == "__main__":
    main()

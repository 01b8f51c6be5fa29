"""How INRs are fitted decides what weight-space models can read from them: a small study.

Fits the same MNIST images (first ``--train`` + ``--val`` of the source train split) under several
settings, ``shared`` (every SIREN starts from one initialisation) or ``own`` (a seed per image,
the paper's and ``l2o-graphs inr make``'s setting) at a given Adam learning rate, then trains the
fast baselines (StatNN, flat MLP; ``--models`` may add the graph classifiers) on each and reports
the best validation accuracy.

Run: ``python benchmarks/inr_init_study.py [--settings own:3e-3 own:5e-4 shared:3e-3] [--threads 1]``.
Writes ``benchmarks/results/inr_init_study_<machine>.json``.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.data import load_images
from l2o_graphs.inr import fit_sirens
from l2o_graphs.inr.classify import CLASSIFIERS, build_classifier
from l2o_graphs.inr.dataset import InrSet
from l2o_graphs.inr.fit import FIT_STEPS
from l2o_graphs.weightspace import fit_classifier


def fit_setting(images: torch.Tensor, init: str, lr: float, steps: int, shard: int = 256):
    """Parameters ``{name: [n, ...]}`` and PSNR ``[n]`` of one SIREN per image."""
    params, psnr = {}, []
    for a in range(0, len(images), shard):
        count = min(shard, len(images) - a)
        seeds = [0] * count if init == "shared" else list(range(a, a + count))
        p, q = fit_sirens(images[a:a + count], seeds, steps, lr)
        for name, value in p.items():
            params.setdefault(name, []).append(value)
        psnr.append(q)
    return {name: torch.cat(v) for name, v in params.items()}, torch.cat(psnr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["own:3e-3", "own:5e-4", "shared:3e-3"],
                        help="INIT:LR pairs, INIT one of own, shared")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--steps", type=int, default=FIT_STEPS)
    parser.add_argument("--models", nargs="+", choices=CLASSIFIERS, default=["statnn", "mlp"])
    parser.add_argument("--epochs", type=int, default=30)
    add_run_options(parser)
    args = parse_run_args(parser)
    images, labels = load_images("mnist", "train")
    n = args.train + args.val
    images, labels = images[:n, 0], labels[:n]
    rows = []
    for setting in args.settings:
        init, lr = setting.split(":")
        if init not in ("own", "shared"):
            raise SystemExit(f"bad setting {setting!r}: INIT is own or shared")
        start = time.perf_counter()
        params, psnr = fit_setting(images, init, float(lr), args.steps)
        row = {"init": init, "lr": float(lr), "steps": args.steps, "mean_psnr": round(float(psnr.mean()), 2),
               "fit_s": round(time.perf_counter() - start)}
        train = {k: v[:args.train] for k, v in params.items()}
        val = ({k: v[args.train:] for k, v in params.items()}, labels[args.train:])
        for name in args.models:
            model = build_classifier(name, InrSet(train, labels[:args.train], psnr[:args.train], torch.arange(args.train)),
                                     args.seed)
            result = fit_classifier(model, (train, labels[:args.train]), val, val, epochs=args.epochs,
                                    seed=args.seed, progress=False)
            row[name] = {"val_acc": round(result["val_acc"], 4), "final_train_loss": round(result["history"][-1]["train_loss"], 4),
                         "seconds": round(result["seconds"])}
        print(row, flush=True)
        rows.append(row)
    info = machine()
    payload = {"benchmark": "inr_init_study", "command": "python benchmarks/inr_init_study.py " + " ".join(sys.argv[1:]),
               "machine": info, "train": args.train, "val": args.val, "epochs": args.epochs, "results": rows,
               "note": "validation split = the next --val images of MNIST's train split; best epoch's accuracy"}
    print(f"wrote {write_result(f'inr_init_study_{cpu_slug(info)}' + ('_' + args.tag if args.tag else '') + '.json', payload)}")


if __name__ == "__main__":
    main()

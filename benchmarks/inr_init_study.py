"""How INRs are fitted decides what weight-space models can read from them: a small study.

Fits the same MNIST images (first ``--train`` + ``--val`` of the source train split) under several
settings, ``shared`` (every SIREN starts from one initialisation) or ``own`` (a seed per image,
the paper's and ``l2o-graphs inr make``'s setting) at a given Adam learning rate, optionally with
another initialisation scheme, step budget and PSNR at which each fit stops (DWSNets' protocol:
``own:5e-4:dwsnets:1000:40``), then trains the fast baselines (StatNN, flat MLP; ``--models`` may
add the graph classifiers) on each, with every input standardisation of ``--normalizations`` the
model allows, and reports the best validation accuracy.

Run: ``python benchmarks/inr_init_study.py [--settings own:3e-3 own:5e-4 shared:3e-3] [--threads 1]``.
Writes ``benchmarks/results/inr_init_study_<machine>.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

import torch

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.data import load_images
from l2o_graphs.inr import fit_sirens
from l2o_graphs.inr.classify import CLASSIFIERS, build_classifier
from l2o_graphs.inr.dataset import InrSet
from l2o_graphs.inr.fit import FIT_STEPS
from l2o_graphs.inr.siren import INIT_SCHEMES
from l2o_graphs.weightspace.models import NORMALIZATIONS
from l2o_graphs.weightspace import fit_classifier


def fit_setting(images: torch.Tensor, init: str, lr: float, steps: int, shard: int = 256, scheme: str = "siren",
                stop_psnr: Optional[float] = None):
    """Parameters ``{name: [n, ...]}`` and PSNR ``[n]`` of one SIREN per image."""
    params, psnr = {}, []
    for a in range(0, len(images), shard):
        count = min(shard, len(images) - a)
        seeds = [0] * count if init == "shared" else list(range(a, a + count))
        p, q = fit_sirens(images[a:a + count], seeds, steps, lr, scheme, stop_psnr)
        for name, value in p.items():
            params.setdefault(name, []).append(value)
        psnr.append(q)
    return {name: torch.cat(v) for name, v in params.items()}, torch.cat(psnr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["own:3e-3", "own:5e-4", "shared:3e-3"],
                        help="INIT:LR[:SCHEME[:STEPS[:STOP_PSNR]]], INIT one of own, shared; SCHEME a SIREN "
                             "initialisation (siren, dwsnets); STEPS and STOP_PSNR default to --steps and none")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--steps", type=int, default=FIT_STEPS)
    parser.add_argument("--models", nargs="+", choices=CLASSIFIERS, default=["statnn", "mlp"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--normalizations", nargs="+", choices=NORMALIZATIONS, default=["tensor"],
                        help="input standardisations to train each model with (graph models: tensor only)")
    add_run_options(parser)
    args = parse_run_args(parser)
    images, labels = load_images("mnist", "train")
    n = args.train + args.val
    images, labels = images[:n, 0], labels[:n]
    rows = []
    for setting in args.settings:
        init, lr, *rest = setting.split(":")
        scheme = rest[0] if rest else "siren"
        steps = int(rest[1]) if len(rest) > 1 else args.steps
        stop_psnr = float(rest[2]) if len(rest) > 2 else None
        if init not in ("own", "shared") or scheme not in INIT_SCHEMES or len(rest) > 3:
            raise SystemExit(f"bad setting {setting!r}: INIT:LR[:SCHEME[:STEPS[:STOP_PSNR]]], INIT own or shared")
        start = time.perf_counter()
        params, psnr = fit_setting(images, init, float(lr), steps, scheme=scheme, stop_psnr=stop_psnr)
        row = {"init": init, "lr": float(lr), "scheme": scheme, "steps": steps, "stop_psnr": stop_psnr,
               "mean_psnr": round(float(psnr.mean()), 2), "min_psnr": round(float(psnr.min()), 2),
               "fit_s": round(time.perf_counter() - start)}
        train = {k: v[:args.train] for k, v in params.items()}
        val = ({k: v[args.train:] for k, v in params.items()}, labels[args.train:])
        train_set = InrSet(train, labels[:args.train], psnr[:args.train], torch.arange(args.train))
        for name in args.models:
            for normalization in args.normalizations:
                if normalization == "element" and name != "mlp":
                    continue  # graph encoders need invariant statistics; StatNN standardises its own
                model = build_classifier(name, train_set, args.seed, normalization=normalization)
                result = fit_classifier(model, (train, labels[:args.train]), val, val, epochs=args.epochs,
                                        seed=args.seed, progress=False)
                key = name if normalization == "tensor" else f"{name}/{normalization}"
                row[key] = {"val_acc": round(result["val_acc"], 4),
                            "final_train_loss": round(result["history"][-1]["train_loss"], 4),
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

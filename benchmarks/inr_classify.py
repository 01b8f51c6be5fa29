"""INR classification from weights: NG-GNN and NG-T against the flat-weights MLP and StatNN.

Run: ``python benchmarks/inr_classify.py --dataset mnist [--folder F] [--epochs 20] [--threads 1]``
after ``l2o-graphs inr make --dataset mnist ...``. Writes
``benchmarks/results/inr_classify_<dataset>_<machine>.json`` (the set's size and fit settings,
accuracies, timings) and a PNG of validation accuracy per epoch.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, write_result  # noqa: E402

from l2o_graphs.inr import default_folder, load_inr_set  # noqa: E402
from l2o_graphs.inr.classify import CLASSIFIERS, classify_inrs  # noqa: E402


def _plot(results, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, r in results.items():
        ax.plot([h["epoch"] for h in r["history"]], [h["val_acc"] for h in r["history"]],
                label=f"{m} (test {r['test_acc']:.3f})")
    ax.set(title=title, xlabel="epoch", ylabel="validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--models", nargs="+", choices=CLASSIFIERS, default=list(CLASSIFIERS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.folder or default_folder(args.dataset)
    start = time.perf_counter()
    results = classify_inrs(folder, args.models, epochs=args.epochs, seed=args.seed, progress=False)
    info = machine()
    slug = re.sub(r"[^a-z0-9]+", "-", str(info["cpu"]).lower()).strip("-")[:24]
    name = f"inr_classify_{args.dataset}_{slug}{'_' + args.tag if args.tag else ''}"
    inr_set = {"config": json.loads((folder / "config.json").read_text()),
               "mean_psnr": {s: round(float(load_inr_set(folder, s).psnr.mean()), 2) for s in ("train", "val", "test")}}
    payload = {"benchmark": "inr_classify", "command": "python benchmarks/inr_classify.py " + " ".join(sys.argv[1:]),
               "machine": info, "inr_set": inr_set, "epochs": args.epochs, "wall_s": round(time.perf_counter() - start),
               "results": {m: {k: v for k, v in r.items()} for m, r in results.items()}}
    print(f"wrote {write_result(name + '.json', payload)}")
    _plot(results, f"INR classification, {args.dataset} ({info['cpu']})", RESULTS / f"{name}.png")
    for m, r in results.items():
        print(f"{m:<8} val {r['val_acc']:.4f} test {r['test_acc']:.4f} (epoch {r['best_epoch']}, {r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

"""Generalization prediction on the CNN zoo: NG-GNN and NG-T against StatNN (Kendall tau).

Run, after ``l2o-graphs zoo make ...``: ``python benchmarks/zoo_predict.py [--folder F] [--epochs 30]
[--threads 1]``. Writes ``benchmarks/results/zoo_predict_<machine>.json`` (the zoo's settings and
size, tau and MSE per model, timings, test predictions) and a PNG: validation tau per epoch, and
predicted against true test accuracy of the test networks' checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import RESULTS, add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.zoo import PREDICTORS, default_zoo_folder, predict_zoo


def _plot(results, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, scatter) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m, r in results.items():
        curves.plot([h["epoch"] for h in r["history"]], [h["val"] for h in r["history"]], label=m)
        scatter.scatter(r["test_true"], r["test_predicted"], s=10, alpha=0.6, label=f"{m} (test tau {r['test_tau']:.3f})")
    curves.set(title="validation Kendall tau", xlabel="epoch")
    curves.legend()
    scatter.plot([0, 1], [0, 1], color="grey", lw=0.8)
    scatter.set(title="test checkpoints", xlabel="true test accuracy", ylabel="predicted", xlim=(0, 1), ylim=(0, 1))
    scatter.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--models", nargs="+", choices=PREDICTORS, default=list(PREDICTORS))
    parser.add_argument("--epochs", type=int, default=30)
    add_run_options(parser)
    args = parse_run_args(parser)
    folder = args.folder or default_zoo_folder()
    start = time.perf_counter()
    results = predict_zoo(folder, args.models, epochs=args.epochs, seed=args.seed, progress=False)
    sizes = results.pop("_sizes")
    info = machine()
    slug = cpu_slug(info)
    payload = {"benchmark": "zoo_predict", "command": "python benchmarks/zoo_predict.py " + " ".join(sys.argv[1:]),
               "machine": info, "zoo": json.loads((folder / "config.json").read_text()), "checkpoints": sizes,
               "epochs": args.epochs, "wall_s": round(time.perf_counter() - start), "results": results}
    name = f"zoo_predict_{slug}" + ("_" + args.tag if args.tag else "")
    print(f"wrote {write_result(name + '.json', payload)}")
    _plot(results, f"generalization prediction, {sizes['train']} train checkpoints ({info['cpu']})",
          RESULTS / f"{name}.png")
    for m, r in results.items():
        print(f"{m:<8} val tau {r['val_tau']:.4f} test tau {r['test_tau']:.4f} (epoch {r['best_epoch']}, "
              f"{r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

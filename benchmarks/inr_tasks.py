"""INR classification and editing from weights: NG-GNN and NG-T against the paper's baselines.

Run, after ``l2o-graphs inr make --dataset mnist ...``:
``python benchmarks/inr_tasks.py --task classify --dataset mnist [--epochs 20] [--threads 1]``
(NG-GNN, NG-T, flat-weights MLP, StatNN: test accuracy) or ``--task edit`` (NG-GNN, NG-T, flat
MLP: pixel MSE to the 3x3-dilated image, and the MSE of not editing). Writes
``benchmarks/results/inr_<task>_<dataset>_<machine>.json`` (the set's size and fit settings,
scores, timings) and a PNG of the validation score per epoch.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

from common import RESULTS, add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.inr import default_folder, load_inr_set
from l2o_graphs.inr.classify import CLASSIFIERS, SirenAugment, classify_inrs
from l2o_graphs.inr.edit import EDITORS, edit_inrs
from l2o_graphs.weightspace.encoder import VALUE_EMBEDDINGS


def _plot(results, task: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, r in results.items():
        score = f"test {r['test_acc']:.3f}" if task == "classify" else f"test MSE {r['test_mse']:.4f}"
        ax.plot([h["epoch"] for h in r["history"]], [h["val"] for h in r["history"]], label=f"{m} ({score})")
    ax.set(title=title, xlabel="epoch", ylabel="validation accuracy" if task == "classify" else "validation MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("classify", "edit"), default="classify")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--models", nargs="+", choices=sorted(set(CLASSIFIERS) | set(EDITORS)))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--probes", type=int, default=0, help="classify: probe points of the graph classifiers")
    parser.add_argument("--dropout", type=float, default=0.0, help="classify: dropout after each graph layer")
    parser.add_argument("--values", choices=VALUE_EMBEDDINGS, default="linear",
                        help="classify: how graph classifiers embed weights and biases")
    parser.add_argument("--augment", type=float, nargs=2, metavar=("DEGREES", "SHIFT"),
                        help="classify: train on SIRENs rotated by up to DEGREES and shifted by up to SHIFT")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the task function's)")
    parser.add_argument("--checkpoints", type=Path,
                        help="classify: save each model's training here after every epoch; rerun the same command "
                             "to continue it")
    add_run_options(parser)
    args = parse_run_args(parser)
    folder = args.folder or default_folder(args.dataset)
    run, models, epochs = ((classify_inrs, CLASSIFIERS, 20) if args.task == "classify" else (edit_inrs, EDITORS, 10))
    models = args.models or list(models)
    epochs = args.epochs or epochs
    batch_size = args.batch_size or inspect.signature(run).parameters["batch_size"].default
    start = time.perf_counter()
    extra = {"probes": args.probes, "dropout": args.dropout, "values": args.values,
             "augment": SirenAugment(*args.augment) if args.augment else None, "checkpoints": args.checkpoints,
             "log": lambda name, row: print(name, json.dumps(row), flush=True)} if args.task == "classify" else {}
    results = run(folder, models, epochs=epochs, seed=args.seed, batch_size=batch_size, progress=False, **extra)
    info = machine()
    slug = cpu_slug(info)
    name = f"inr_{args.task}_{args.dataset}_{slug}{'_' + args.tag if args.tag else ''}"
    inr_set = {"config": json.loads((folder / "config.json").read_text()),
               "mean_psnr": {s: round(float(load_inr_set(folder, s).psnr.mean()), 2) for s in ("train", "val", "test")}}
    payload = {"benchmark": f"inr_{args.task}", "command": "python benchmarks/inr_tasks.py " + " ".join(sys.argv[1:]),
               "machine": info, "inr_set": inr_set, "epochs": epochs, "batch_size": batch_size,
               "settings": {k: getattr(args, k) for k in ("probes", "dropout", "values", "augment", "seed")},
               "wall_s": round(time.perf_counter() - start),  # this invocation's; results' seconds sum resumed parts
               "results": results}
    print(f"wrote {write_result(name + '.json', payload)}")
    _plot(results, args.task, f"INR {args.task}, {args.dataset} ({info['cpu']})", RESULTS / f"{name}.png")
    for m, r in results.items():
        score = (f"val {r['val_acc']:.4f} test {r['test_acc']:.4f}" if args.task == "classify"
                 else f"val MSE {r['val_mse']:.5f} test MSE {r['test_mse']:.5f} (unedited {r['unedited_test_mse']:.5f})")
        print(f"{m:<8} {score} (epoch {r['best_epoch']}, {r['seconds']:.0f} s)")


if __name__ == "__main__":
    main()

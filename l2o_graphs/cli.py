"""The ``l2o-graphs`` command: parses arguments and calls library functions, nothing more. Its
choices and defaults are read from the library (registries, spec dataclasses, function
signatures), never repeated here."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import torch

from l2o_graphs.data import DATASET_NAMES, load_images
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.inr.classify import CLASSIFIERS, SirenAugment, classify_inrs
from l2o_graphs.inr.dataset import FIT_SETTINGS, INR_DATASETS, PROTOCOLS, InrSetSpec
from l2o_graphs.inr.siren import INIT_SCHEMES
from l2o_graphs.inr.edit import EDITORS, edit_inrs
from l2o_graphs.nn import NETS
from l2o_graphs.tasks import ARCHITECTURES, build_architecture
from l2o_graphs.weightspace.encoder import VALUE_EMBEDDINGS
from l2o_graphs.weightspace.models import NORMALIZATIONS
from l2o_graphs.zoo.make import ZooSpec
from l2o_graphs.zoo.predict import PREDICTORS, predict_zoo


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


POSITIVE, NON_NEGATIVE = _count(1), _count(0)


def _field_default(spec: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``spec``."""
    field = next(f for f in dataclasses.fields(spec) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def _argument_default(fn: Callable, name: str) -> Any:
    """The default of parameter ``name`` of the function ``fn``."""
    return inspect.signature(fn).parameters[name].default


def _cmd_graph(args: argparse.Namespace) -> int:
    model = build_architecture(args.model)
    example = torch.zeros(1, 1, 28, 28) if args.example_input else None
    start = time.perf_counter()
    graph = NeuralGraph.from_module(model, example)
    built = time.perf_counter() - start
    print(graph.summary())
    params = dict(model.named_parameters())
    node_x, edge_x = graph.gather(params)
    back = graph.scatter(node_x, edge_x)
    exact = all(torch.equal(back[n], p) for n, p in params.items())
    print(f"topology built in {built * 1e3:.1f} ms; node_x {tuple(node_x.shape)}, edge_x {tuple(edge_x.shape)}; "
          f"gather/scatter round trip {'exact' if exact else 'NOT EXACT'}")
    return 0 if exact else 1


def _cmd_data(args: argparse.Namespace) -> int:
    for split in args.splits:
        images, labels = load_images(args.name, split)
        counts = torch.bincount(labels, minlength=10).tolist()
        print(f"{args.name:<14} {split:<5} images {tuple(images.shape)} in [{float(images.min()):.1f}, "
              f"{float(images.max()):.1f}]  labels per class {counts}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from l2o_graphs.demo import compare_with_adam

    print("== the held-out networks as neural graphs ==")
    for name in ("mlp", "paper-cnn-x2"):
        print(f"{name}: {NeuralGraph.from_module(build_architecture(name))}")
    print(f"\n== shipped NG-GNN against Adam, {args.steps} steps, batch 128, MNIST (offline) ==")
    compare_with_adam(args.out, steps=args.steps)
    return 0


_OVERRIDES = ("net", "suite", "outer_steps", "meta_batch", "unroll", "lr", "seed", "device", "checkpoint_every")


def _cmd_meta_train(args: argparse.Namespace) -> int:
    from l2o_graphs.meta import MetaConfig, MetaTrainer, torchrun_process_group
    from l2o_graphs.meta.plot import plot_run
    from l2o_graphs.meta.trainer import MetaTrainingDiverged

    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    for flag in ("second_order", "autocast"):
        if getattr(args, flag):
            overrides[flag] = True
    cfg = MetaConfig.from_yaml(args.config, overrides) if args.config else MetaConfig.from_dict(overrides)
    with torchrun_process_group(cfg.device):
        trainer = MetaTrainer(cfg, args.run_dir, resume=args.resume, overwrite=args.overwrite)
        if trainer.rank == 0:
            print(f"meta-training {cfg.net} on suite {cfg.suite if isinstance(cfg.suite, str) else cfg.suite['name']} "
                  f"on {trainer.device} x {trainer.world}; run directory {args.run_dir}"
                  + (f", resuming at step {trainer.step}" if trainer.step else ""))
        stop_after = None if args.stop_at is None else max(0, args.stop_at - trainer.step)
        try:
            trainer.run(progress=not args.no_progress, stop_after=stop_after)
        except MetaTrainingDiverged as err:
            print(f"l2o-graphs meta-train: {err}", file=sys.stderr)
            return 1
        if trainer.step < cfg.outer_steps:  # stopped by --stop-at: the state of this step, to resume from
            trainer.save()
            if trainer.rank == 0:
                print(f"stopped at outer step {trainer.step} of {cfg.outer_steps} (continue with --resume); "
                      f"wrote {plot_run(args.run_dir)}")
        elif trainer.rank == 0:
            print(f"wrote {Path(args.run_dir) / 'weights.pt'} and {plot_run(args.run_dir)}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from l2o_graphs.meta.plot import plot_run

    print(f"wrote {plot_run(args.run_dir)}")
    return 0


def _cmd_inr_make(args: argparse.Namespace) -> int:
    from l2o_graphs.inr import default_folder, load_inr_set, make_inr_set

    fit = {key: getattr(args, key) for key in FIT_SETTINGS if getattr(args, key) is not None}
    spec = InrSetSpec.of_protocol(args.protocol, args.dataset, counts={"train": args.train, "val": args.val,
                                                                       "test": args.test},
                                  seed=args.seed, shard_size=args.shard_size, **fit)
    folder = args.out or default_folder(args.dataset)
    threads = torch.get_num_threads()
    stats = make_inr_set(spec, folder, progress=not args.no_progress, workers=args.workers, device=args.device,
                         compile=args.compile)
    print(f"{folder}: fitted {stats['fitted']} INRs in {stats['seconds']:.0f} s "
          f"({stats['inrs_per_second']:.1f} INRs/s, {args.workers} process(es), {threads} threads in all)")
    for split in spec.counts:
        psnr = load_inr_set(folder, split).psnr
        if len(psnr):
            print(f"  {split:<5} {len(psnr):>6} INRs  PSNR mean {float(psnr.mean()):.1f} dB, "
                  f"min {float(psnr.min()):.1f} dB")
    return 0


def _print_table(results: dict, columns: List[tuple]) -> None:
    """One row per model: ``columns`` are ``(header, key, width, format)``."""
    print(f"{'model':<8} " + " ".join(f"{h:>{w}}" for h, _, w, _ in columns))
    for name, r in results.items():
        print(f"{name:<8} " + " ".join(f"{r[k]:>{w}{f}}" for _, k, w, f in columns))


def _cmd_inr_task(args: argparse.Namespace) -> int:
    from l2o_graphs.inr import default_folder

    run = classify_inrs if args.inr_command == "classify" else edit_inrs
    if getattr(args, "augment", None) is not None and len(args.augment) > 2:
        raise ValueError(f"--augment takes at most two values, DEGREES and SHIFT, not {len(args.augment)}")
    extra = ({"probes": args.probes, "dropout": args.dropout, "normalization": args.normalization,
              "protocol": args.protocol, "values": args.values, "checkpoints": args.checkpoints,
              "augment": None if args.augment is None else SirenAugment(*args.augment)} if run is classify_inrs else {})
    results = run(args.folder or default_folder(args.dataset), args.models, epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not args.no_progress, **extra)
    scores = ([("val acc", "val_acc", 8, ".4f"), ("test acc", "test_acc", 9, ".4f")] if run is classify_inrs else
              [("val MSE", "val_mse", 9, ".5f"), ("test MSE", "test_mse", 9, ".5f"),
               ("unedited", "unedited_test_mse", 9, ".5f")])
    _print_table(results, [("params", "parameters", 8, "")] + scores
                 + [("epoch", "best_epoch", 6, ""), ("seconds", "seconds", 8, ".0f")])
    return 0


def _cmd_zoo_make(args: argparse.Namespace) -> int:
    from l2o_graphs.zoo import default_zoo_folder, make_zoo

    spec = ZooSpec(count=args.count, steps=tuple(args.steps), eval_images=args.eval_images, seed=args.seed)
    folder = args.out or default_zoo_folder()
    stats = make_zoo(spec, folder, progress=not args.no_progress)
    print(f"{folder}: trained {stats['trained']} networks in {stats['seconds']:.0f} s "
          f"({torch.get_num_threads()} threads)")
    return 0


def _cmd_zoo_predict(args: argparse.Namespace) -> int:
    from l2o_graphs.zoo import default_zoo_folder

    results = predict_zoo(args.folder or default_zoo_folder(), args.models, epochs=args.epochs, seed=args.seed,
                          progress=not args.no_progress)
    sizes = results.pop("_sizes")
    print(f"checkpoints: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}")
    _print_table(results, [("params", "parameters", 8, ""), ("val tau", "val_tau", 8, ".4f"),
                           ("test tau", "test_tau", 9, ".4f"), ("test MSE", "test_mse", 9, ".5f"),
                           ("epoch", "best_epoch", 6, ""), ("seconds", "seconds", 8, ".0f")])
    return 0


def _cmd_sweep_run(args: argparse.Namespace) -> int:
    from l2o_graphs.sweep import load_sweep, run_sweep

    spec = load_sweep(args.file)
    run_dir = args.run_dir or Path("runs/sweeps") / spec.name
    trials = len(spec.trials())
    print(f"sweep {spec.name}: {len(spec.tasks)} task(s), {len(spec.optimizers)} optimizer(s), {trials} trial(s) "
          f"of {spec.steps} steps; " + (f"Ray cluster {args.ray}" if args.ray else f"{args.workers} local worker(s)")
          + f"; results in {run_dir}")
    counts = run_sweep(spec, run_dir, workers=args.workers, ray=args.ray, threads=args.trial_threads or 0,
                       progress=not args.no_progress)
    print(f"ran {counts['done']} trial(s), {counts['failed']} failed, {counts['skipped']} already done "
          f"({counts['wall_s']:.0f} s); next: l2o-graphs sweep report {run_dir}")
    return 1 if counts["failed"] else 0


def _rename(text: str) -> Tuple[str, str]:
    old, sep, new = text.partition("=")
    if not (sep and old and new):
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {text!r}")
    return old, new


def _cmd_sweep_merge(args: argparse.Namespace) -> int:
    from l2o_graphs.sweep import load_sweep, merge_sweep

    spec = load_sweep(args.file)
    run_dir = args.run_dir or Path("runs/sweeps") / spec.name
    counts = merge_sweep(spec, run_dir, args.source, renames=dict(args.rename))
    print(f"sweep {spec.name}: merged {counts['merged']} trial(s) of {args.source} into {run_dir}; "
          f"{counts['present']} already there, {counts['foreign']} not trials of this sweep (or of another meaning)")
    return 0


def _cmd_sweep_status(args: argparse.Namespace) -> int:
    from l2o_graphs.sweep import sweep_status

    status = sweep_status(args.run_dir)
    print(f"sweep {status['name']}: {status['total']} trial(s): {status['done']} done, {status['running']} running, "
          f"{status['interrupted']} interrupted (rerun to continue), {status['failed']} failed, {status['left']} left")
    for trial, error in status["failed_trials"]:
        print(f"  failed: {trial}: {error}")
    return 0


def _cmd_sweep_report(args: argparse.Namespace) -> int:
    from l2o_graphs.sweep import write_report

    paths = write_report(args.run_dir, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _command_group(sub: Any, name: str, text: str) -> Any:
    """A command ``name`` made of subcommands (``l2o-graphs NAME SUBCOMMAND``); returns the
    subparsers to add them to. Which one ran is ``args.NAME_command``."""
    return sub.add_parser(name, help=text).add_subparsers(dest=f"{name}_command", required=True,
                                                          metavar=f"{name.upper()}_COMMAND")


def _add_demo(sub: Any) -> None:
    """Add the ``demo`` command to ``sub``."""
    demo = sub.add_parser("demo", help="the main job: the shipped learned optimizer against Adam",
                          description="Train two held-out networks (an MLP and the paper's CNN at double width, "
                                      "MNIST) with the shipped NG-GNN optimizer and with Adam side by side; "
                                      "print a table and write OUT/demo_curves.png.")
    demo.add_argument("--steps", type=POSITIVE, default=300)
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the loss-curve PNG")
    demo.set_defaults(func=_cmd_demo)


def _add_graph(sub: Any) -> None:
    """Add the ``graph`` command to ``sub``."""
    graph = sub.add_parser("graph", help="build and print the neural graph of an architecture",
                           description="Build the neural graph of a named architecture, print it per layer "
                                       "and check the gather/scatter round trip.")
    graph.add_argument("--model", choices=sorted(ARCHITECTURES), default="paper-cnn")
    graph.add_argument("--example-input", action="store_true",
                       help="propagate a 1x1x28x28 input to fix flattened map shapes")
    graph.set_defaults(func=_cmd_graph)


def _add_data(sub: Any) -> None:
    """Add the ``data`` command to ``sub``."""
    data = sub.add_parser("data", help="load a dataset and print its shapes and label counts",
                          description="Load a dataset from the offline sources (see l2o_graphs.data).")
    data.add_argument("name", choices=DATASET_NAMES)
    data.add_argument("--splits", nargs="+", choices=("train", "test"), default=["train", "test"])
    data.set_defaults(func=_cmd_data)


def _add_meta_train(sub: Any, training: List[argparse.ArgumentParser]) -> None:
    """Add the ``meta-train`` command to ``sub``."""
    meta = sub.add_parser(
        "meta-train", parents=training, help="meta-train an update network with truncated backprop on a task suite",
        description="Meta-train an update network on a task suite (truncated backprop through unrolled "
                    "inner training). Options override the --config file; the run directory receives "
                    "config.json, checkpoint.pt (atomic), metrics.jsonl, weights.pt and meta_curves.png. "
                    "Under torchrun the meta-batch is split across processes.")
    meta.add_argument("--config", type=Path, help="YAML meta-training config (see configs/)")
    meta.add_argument("--run-dir", type=Path, required=True)
    meta.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt (or carry.pt)")
    meta.add_argument("--overwrite", action="store_true",
                      help="start again in a RUN_DIR that holds a run (its files are replaced)")
    meta.add_argument("--net", choices=list(NETS))
    meta.add_argument("--suite", help="built-in suite (fmnist-cnn, mixed-small, digits-mlp, fewshot) or a YAML file")
    meta.add_argument("--outer-steps", type=POSITIVE)
    meta.add_argument("--meta-batch", type=POSITIVE)
    meta.add_argument("--unroll", type=POSITIVE, help="inner steps per truncation (K)")
    meta.add_argument("--lr", type=float, help="outer Adam learning rate")
    meta.add_argument("--second-order", action="store_true", help="differentiate through optimizee gradients")
    meta.add_argument("--seed", type=int)
    meta.add_argument("--device", choices=("auto", "cpu", "cuda"))
    meta.add_argument("--checkpoint-every", type=POSITIVE)
    meta.add_argument("--autocast", action="store_true", help="bfloat16 autocast for the unrolls (mixed precision)")
    meta.add_argument("--stop-at", type=NON_NEGATIVE,
                      help="stop after this outer step, checkpointed (the schedule stays that of --outer-steps; "
                           "--resume goes on)")
    meta.set_defaults(func=_cmd_meta_train)


def _add_inr(sub: Any, training: List[argparse.ArgumentParser]) -> None:
    """Add the ``inr`` commands: make, classify, edit to ``sub``."""
    inr_sub = _command_group(sub, "inr", "INR sets: fit one SIREN per image (the paper's INR tasks)")
    what = ("Fit SIRENs (2-32-32-1, omega_0 = 30) to the first N images of each split (train: source train "
            "[0, 55000), val: [55000, 60000), test: source test), many at once, into OUT (default: the data "
            "cache's inrs/DATASET). Rerun the same command to continue an interrupted set.")
    make = inr_sub.add_parser("make", parents=training, description=what,
                              help="fit one SIREN per image of MNIST or Fashion-MNIST into resumable shards")
    make.add_argument("--dataset", choices=INR_DATASETS, required=True)
    counts = _field_default(InrSetSpec, "counts")
    make.add_argument("--train", type=NON_NEGATIVE, default=counts["train"], help="INRs of the train split")
    make.add_argument("--val", type=NON_NEGATIVE, default=counts["val"])
    make.add_argument("--test", type=NON_NEGATIVE, default=counts["test"])
    make.add_argument("--protocol", choices=list(PROTOCOLS), default="default",
                      help="how the INRs are fitted: " + "; ".join(
                          f"{name}: {', '.join(f'{k} {v}' for k, v in fit.items())}" for name, fit in PROTOCOLS.items())
                      + " (the options below override it)")
    make.add_argument("--steps", type=POSITIVE, help="Adam steps per INR, at most")
    make.add_argument("--lr", type=float, help="Adam's learning rate")
    make.add_argument("--init", choices=INIT_SCHEMES, help="SIREN initialisation")
    make.add_argument("--stop-psnr", type=float, help="stop each INR once it reaches this PSNR (dB)")
    make.add_argument("--seed", type=int, default=_field_default(InrSetSpec, "seed"))
    make.add_argument("--shard-size", type=POSITIVE, default=_field_default(InrSetSpec, "shard_size"),
                      help="INRs per shard and per batched fit")
    make.add_argument("--workers", type=POSITIVE, default=1,
                      help="processes fitting shards at once, sharing --threads (the same command run "
                           "elsewhere on the folder also joins in)")
    make.add_argument("--device", default="cpu", help="where to fit (cpu, cuda, cuda:1, ...)")
    make.add_argument("--compile", action="store_true",
                      help="fit through torch.compile (several times faster; needs a C++ compiler on a CPU, "
                           "changes the INRs by rounding only)")
    make.add_argument("--out", type=Path)
    make.set_defaults(func=_cmd_inr_make)

    for command, models, run, text in (
            ("classify", CLASSIFIERS, classify_inrs,
             "Train NG-GNN, NG-T, the flat-weights MLP and StatNN to classify the INRs of a set by the class of "
             "their image; keep each model's best validation epoch and print its test accuracy."),
            ("edit", EDITORS, edit_inrs,
             "Train editors (NG-GNN and NG-T with equivariant per-edge and per-node heads, and the flat-weights "
             "MLP) to change SIREN weights so that the rendering matches the 3x3 dilation of the original; "
             "print validation and test pixel MSE.")):
        task = inr_sub.add_parser(command, parents=training, help=text.split(";")[0], description=text)
        task.add_argument("--dataset", choices=INR_DATASETS, default=INR_DATASETS[0])
        task.add_argument("--folder", type=Path, help="the INR set (default: the data cache's inrs/DATASET)")
        task.add_argument("--models", nargs="+", choices=models, default=list(models))
        task.add_argument("--epochs", type=POSITIVE, default=_argument_default(run, "epochs"))
        task.add_argument("--batch-size", type=POSITIVE, default=_argument_default(run, "batch_size"))
        task.add_argument("--lr", type=float, default=_argument_default(run, "lr"))
        task.add_argument("--seed", type=int, default=_argument_default(run, "seed"))
        if command == "classify":
            task.add_argument("--probes", type=NON_NEGATIVE, default=_argument_default(run, "probes"),
                              help="graph classifiers also read every neuron's values at this many learnable "
                                   "input points (probe features)")
            task.add_argument("--dropout", type=float, default=_argument_default(run, "dropout"),
                              help="graph classifiers: dropout on node states after each graph layer")
            task.add_argument("--normalization", choices=NORMALIZATIONS,
                              default=_argument_default(run, "normalization"),
                              help="input standardisation fitted on the train split: per tensor (invariant; "
                                   "graph classifiers need it) or per element (DWSNets')")
            task.add_argument("--protocol", choices=list(PROTOCOLS),
                              help="refuse an INR set made by another protocol")
            task.add_argument("--values", choices=VALUE_EMBEDDINGS, default=_argument_default(run, "values"),
                              help="graph classifiers: embed weights and biases linearly or by random Fourier "
                                   "features")
            defaults = (_field_default(SirenAugment, "rotation_degrees"), _field_default(SirenAugment, "shift"))
            task.add_argument("--augment", type=float, nargs="*", metavar=("DEGREES", "SHIFT"),
                              help="train on SIRENs moved at random: rotated by up to DEGREES and shifted by up to "
                                   f"SHIFT (of the [-1, 1] frame); without values {defaults[0]:g} and {defaults[1]:g}")
            task.add_argument("--checkpoints", type=Path,
                              help="save each model's training here after every epoch, and continue from it when "
                                   "the same command is run again")
        task.set_defaults(func=_cmd_inr_task)


def _add_zoo(sub: Any, training: List[argparse.ArgumentParser]) -> None:
    """Add the ``zoo`` commands: make, predict to ``sub``."""
    zoo_sub = _command_group(sub, "zoo", "a zoo of trained CNNs and generalization prediction from weights")
    zoo_make = zoo_sub.add_parser(
        "make", parents=training, help="train small CNNs of diverse architectures, keeping checkpoints and test accuracies",
        description="Train COUNT CNNs (2-5 conv layers, 4-32 channels, kernels 3/5/7, six activations, optional "
                    "skip connections; MNIST or Fashion-MNIST; AdamW with sampled learning rate, weight decay "
                    "and length) into OUT (default: the data cache's zoo/). Rerun to continue.")
    zoo_make.add_argument("--count", type=POSITIVE, default=_field_default(ZooSpec, "count"))
    zoo_make.add_argument("--steps", type=POSITIVE, nargs=2, default=list(_field_default(ZooSpec, "steps")),
                          metavar=("MIN", "MAX"), help="training steps, log-uniform between MIN and MAX")
    zoo_make.add_argument("--eval-images", type=POSITIVE, default=_field_default(ZooSpec, "eval_images"),
                          help="test images per accuracy")
    zoo_make.add_argument("--seed", type=int, default=_field_default(ZooSpec, "seed"))
    zoo_make.add_argument("--out", type=Path)
    zoo_make.set_defaults(func=_cmd_zoo_make)
    zoo_predict = zoo_sub.add_parser(
        "predict", parents=training, help="predict the zoo networks' test accuracy from their weights (Kendall tau)",
        description="Train NG-GNN, NG-T and StatNN to predict test accuracy from weights on the zoo's train "
                    "networks; keep the best validation Kendall tau; print test tau.")
    zoo_predict.add_argument("--folder", type=Path)
    zoo_predict.add_argument("--models", nargs="+", choices=PREDICTORS, default=list(PREDICTORS))
    zoo_predict.add_argument("--epochs", type=POSITIVE, default=_argument_default(predict_zoo, "epochs"))
    zoo_predict.add_argument("--seed", type=int, default=_argument_default(predict_zoo, "seed"))
    zoo_predict.set_defaults(func=_cmd_zoo_predict)


def _add_sweep(sub: Any, quiet: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` commands: run, merge, status, report to ``sub``."""
    sweep_sub = _command_group(sub, "sweep", "benchmark sweeps: optimizers x tasks x grids x seeds, tables and plots")
    sweep_run = sweep_sub.add_parser(
        "run", parents=[quiet], help="run (or continue) the trials of a sweep file",
        description="Run every trial (task x optimizer x setting x seed) of a sweep YAML (see "
                    "l2o_graphs.sweep.spec) not yet recorded in RUN_DIR/results.sqlite: finished trials are "
                    "skipped, interrupted and failed ones run again. Local worker processes by default, or a "
                    "Ray cluster with --ray.")
    sweep_run.add_argument("file", type=Path, help="the sweep YAML")
    sweep_run.add_argument("--run-dir", type=Path, help="default: runs/sweeps/NAME")
    sweep_run.add_argument("--workers", type=POSITIVE, default=1, help="local worker processes")
    sweep_run.add_argument("--ray", metavar="ADDRESS",
                           help="run on Ray instead: auto (this machine's cluster), local (a new one here) or host:port")
    sweep_run.add_argument("--threads", dest="trial_threads", type=POSITIVE,
                           help="torch CPU threads per trial (default: cores / workers)")
    sweep_run.set_defaults(func=_cmd_sweep_run)
    sweep_merge = sweep_sub.add_parser(
        "merge", help="record another run directory's finished trials that belong to this sweep",
        description="Copy into RUN_DIR the finished trials of SOURCE that are trials of the sweep file with "
                    "the same meaning (task, optimizer definition and weights, steps, curves): results a run "
                    "would reproduce, so that one report covers trials run under another sweep file.")
    sweep_merge.add_argument("file", type=Path, help="the sweep YAML")
    sweep_merge.add_argument("source", type=Path, help="the run directory whose trials are merged")
    sweep_merge.add_argument("--run-dir", type=Path, help="default: runs/sweeps/NAME")
    sweep_merge.add_argument("--rename", type=_rename, action="append", default=[], metavar="OLD=NEW",
                             help="SOURCE's optimizer OLD is the sweep file's NEW (same definition and weights "
                                  "content); repeatable")
    sweep_merge.set_defaults(func=_cmd_sweep_merge)
    sweep_status = sweep_sub.add_parser("status", help="done / running / failed / left trials of a sweep")
    sweep_status.add_argument("run_dir", type=Path)
    sweep_status.set_defaults(func=_cmd_sweep_status)
    sweep_report = sweep_sub.add_parser(
        "report", help="tables (Markdown, CSV) and plots of a sweep",
        description="Per task the best setting of every optimizer (flagged at the edge of its grid), final "
                    "train loss, test loss and accuracy (mean ± std over seeds), steps and seconds to the "
                    "tuned baseline's final loss and the speedup over it; median and IQM of the speedups "
                    "with bootstrap intervals; loss curves, speedup chart, performance profile.")
    sweep_report.add_argument("run_dir", type=Path)
    sweep_report.add_argument("--out", type=Path, help="default: RUN_DIR/report")
    sweep_report.set_defaults(func=_cmd_sweep_report)


def _add_plot(sub: Any) -> None:
    """Add the ``plot`` command to ``sub``."""
    plot = sub.add_parser("plot", help="plot the curves of a meta-training run",
                          description="Write RUN_DIR/meta_curves.png from RUN_DIR/metrics.jsonl.")
    plot.add_argument("run_dir", type=Path)
    plot.set_defaults(func=_cmd_plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o-graphs", description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # options shared by the commands that train: one definition each
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=POSITIVE, help="torch CPU threads")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("--no-progress", action="store_true", help="no progress bar")
    training = [threads, quiet]
    _add_demo(sub)
    _add_graph(sub)
    _add_data(sub)
    _add_meta_train(sub, training)
    _add_inr(sub, training)
    _add_zoo(sub, training)
    _add_sweep(sub, quiet)
    _add_plot(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; a user error (bad value, missing or unreadable file, busy folder) is one
    line on stderr and exit status 2 (``--debug``: the traceback instead)."""
    from l2o_graphs.cache import FolderBusy

    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):  # the commands that train in this process
        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, OSError, FolderBusy) as err:
        if args.debug:
            raise
        print(f"l2o-graphs {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

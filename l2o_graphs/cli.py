"""The ``l2o-graphs`` command: parses arguments and calls library functions, nothing more."""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import torch

from l2o_graphs.data import DATASET_NAMES, load_images
from l2o_graphs.graph import GraphBatch, NeuralGraph
from l2o_graphs.tasks import ARCHITECTURES, build_architecture


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
    print("== data: Fashion-MNIST, offline ==")
    _cmd_data(argparse.Namespace(name="fashion_mnist", splits=["train", "test"]))
    images, _ = load_images("fashion_mnist", "test")
    print("\n== the paper's CNN as a neural graph ==")
    model = build_architecture("paper-cnn")
    with torch.no_grad():
        logits = model(images[:128])
    print(f"forward on a batch of 128 test images: logits {tuple(logits.shape)}")
    status = _cmd_graph(argparse.Namespace(model="paper-cnn", example_input=True))
    print("\n== one disjoint batch of four architectures ==")
    models = [build_architecture(name) for name in ("paper-cnn", "paper-cnn-x2", "cnn-flatten", "residual-cnn")]
    batch = GraphBatch([NeuralGraph.from_module(m) for m in models])
    params = [dict(m.named_parameters()) for m in models]
    node_x, edge_x = batch.gather(params)
    exact = all(torch.equal(b[n], p[n]) for b, p in zip(batch.scatter(node_x, edge_x), params) for n in p)
    print(f"{batch}: node_x {tuple(node_x.shape)}, edge_x {tuple(edge_x.shape)}, "
          f"un-batch {'exact' if exact else 'NOT EXACT'}")
    return status if exact else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o-graphs", description=__doc__.split("\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the main job: data, neural graphs and batching on real models",
                          description="Load Fashion-MNIST offline, build the paper's CNN and its neural graph, "
                                      "and batch several architectures into one graph.")
    demo.set_defaults(func=_cmd_demo)

    graph = sub.add_parser("graph", help="build and print the neural graph of an architecture",
                           description="Build the neural graph of a named architecture, print it per layer "
                                       "and check the gather/scatter round trip.")
    graph.add_argument("--model", choices=sorted(ARCHITECTURES), default="paper-cnn")
    graph.add_argument("--example-input", action="store_true",
                       help="propagate a 1x1x28x28 input to fix flattened map shapes")
    graph.set_defaults(func=_cmd_graph)

    data = sub.add_parser("data", help="load a dataset and print its shapes and label counts",
                          description="Load a dataset from the offline sources (see l2o_graphs.data).")
    data.add_argument("name", choices=DATASET_NAMES)
    data.add_argument("--splits", nargs="+", choices=("train", "test"), default=["train", "test"])
    data.set_defaults(func=_cmd_data)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

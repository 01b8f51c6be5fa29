"""How far NG-GNN's Triton kernels are from its float32 PyTorch path: the shipped network's
outputs on random features for three small networks (an MLP, a CNN with 3x3 and 5x5 kernels and
BatchNorm, a residual CNN), with the kernels in float32 and with bfloat16 storage, and the
PyTorch path under bf16 autocast for comparison.

Run: ``TRITON_INTERPRET=1 python benchmarks/kernel_tolerance.py`` on a CPU (Triton's
interpreter), or ``python benchmarks/kernel_tolerance.py --device cuda``; writes
``benchmarks/results/kernel_tolerance_<device>_<machine>.json``: per network and setting, the
largest absolute output error divided by the largest output, and the cosine similarity of all
outputs, against the float32 PyTorch path.
"""
from __future__ import annotations

import argparse
import re
import sys

import torch
from torch import nn

from common import machine, write_result

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.features import NUM_FEATURES, NUM_TIME_FEATURES
from l2o_graphs.graph import NeuralGraph
from l2o_graphs.tasks import ResidualCNN, mlp

SETTINGS = {"triton-fp32": ("triton", False), "triton-bf16": ("triton", True), "torch-bf16": ("torch", True)}


def models() -> dict:
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 5), nn.BatchNorm2d(5), nn.Flatten(),
                        nn.LazyLinear(4))
    cnn(torch.randn(2, 3, 12, 12))
    return {"mlp-13-37-70-5": mlp([13, 37, 70, 5]), "cnn-k3-k5-bn": cnn,
            "residual-cnn": ResidualCNN(channels=6, blocks=2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    net = NeuralGraphOptimizer(nn.Linear(2, 2), check_memory=False).net.to(device)  # the shipped network
    rows = {}
    for name, model in models().items():
        graph = NeuralGraph.from_module(model).to(device).precompute()
        gen = torch.Generator().manual_seed(0)
        features = {n: torch.randn(*p.shape, NUM_FEATURES, generator=gen).to(device)
                    for n, p in model.named_parameters()}
        time = torch.rand(NUM_TIME_FEATURES, generator=gen).to(device)

        def outputs(kernels: str, autocast: bool) -> torch.Tensor:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out, _ = net(features, time, graph, {}, kernels=kernels)
            return torch.cat([out[n].float().flatten() for n in sorted(out)])

        reference = outputs("torch", False)
        scale = reference.abs().max()
        rows[name] = {"params": sum(p.numel() for p in model.parameters())}
        for setting, (kernels, autocast) in SETTINGS.items():
            got = outputs(kernels, autocast)
            rows[name][setting] = {
                "max_error_over_max_output": float((got - reference).abs().max() / scale),
                "cosine": float(nn.functional.cosine_similarity(got, reference, 0))}
            print(f"{name:<16} {setting:<12} max error / max output {rows[name][setting]['max_error_over_max_output']:.2e}"
                  f"  cosine {rows[name][setting]['cosine']:.6f}", flush=True)
    info = machine()
    label = info.get("gpu") if device.type == "cuda" else info["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", str(label).lower()).strip("-")
    result = {"benchmark": "kernel_tolerance", "command": "python benchmarks/kernel_tolerance.py " + " ".join(sys.argv[1:]),
              "machine": info, "device": str(device),
              "tolerance": {"bf16_max_error_over_max_output": 0.05, "bf16_min_cosine": 0.9999,
                            "source": "tests/test_edge_kernels.py"},
              "results": rows}
    print(f"wrote {write_result(f'kernel_tolerance_{device.type}_{slug}.json', result)}")


if __name__ == "__main__":
    main()

"""Cost of one optimizer step: every learned net against torch.optim.Adam, same model, same process.

Run: ``.venv/bin/python benchmarks/step_cost.py`` (CPU). On a GPU machine
``--shipped`` adds ``NeuralGraphOptimizer(model)`` (the shipped
weights and update rule) to the nets, which start untrained under their default rule.
``benchmarks/gpu_checks.sh`` runs it with ``--device cuda --autocast --compile`` up to the 37 M
MLP. Writes ``benchmarks/results/step_cost_<device>_<machine>[_triton][_bf16][_compiled].json`` (per net:
ms per step of the whole optimizer (moments, features, network, update rule, writing the
parameters), ratio to Adam, share of a training step (the model's own forward and backward on a
batch of ``--batch``, timed too), how the network ran (kernels, bf16) and the optimizer's extra
memory per parameter: ``state``, ``workspace`` and ``topology`` bytes, from
``NeuralGraphOptimizer.memory_bytes``, and on CUDA ``peak_extra``, the most the optimizer
allocated beyond the model and its gradients while it was built and stepped). Models:
MLPs on 784 inputs with about 0.1 M, 1 M, 10 M (and 37 M) parameters. Targets (issue 3): NG-GNN's
step at 1 M parameters at most 100x Adam's on the project's 2-core CPU; at most 20 ms at ~37 M
parameters on an H100.
"""
from __future__ import annotations

import argparse
import re
import sys

import torch

from common import machine, median_ms, write_result

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.nn import KERNELS
from l2o_graphs.tasks import mlp

SIZES = {"0.1M": [784, 128, 10], "1M": [784, 1000, 200, 10], "10M": [784, 3000, 2200, 10],
         "37M": [784, 4096, 4096, 4096, 10]}  # the 36.8 M-parameter MLP of ANCHORS.md's GPU table
SIZES_INPUT = 784
CPU_SIZES = ["0.1M", "1M", "10M"]
NETS = ("ng-gnn", "ng-t", "ff", "lstm")


def _with_grads(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    return model


def _model_step_ms(model: torch.nn.Module, batch: int, device: torch.device) -> float:
    """Median time of the model's own forward and backward on a random batch (cross-entropy)."""
    x = torch.randn(batch, SIZES_INPUT, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()

    ms = median_ms(train_step, repeats=20, warmup=3)
    model.zero_grad(set_to_none=True)
    return ms


def _state_bytes_per_param(opt: torch.optim.Optimizer, n_params: int) -> float:
    total = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    return total / n_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=CPU_SIZES, choices=list(SIZES))
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--repeats", type=int, default=5)
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--autocast", action="store_true", help="bfloat16 autocast for the update network")
    precision.add_argument("--no-autocast", action="store_true",
                           help="float32 update network (default: the optimizer's choice, bf16 on CUDA with "
                                "compile or the Triton kernels)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the update network")
    parser.add_argument("--kernels", default="auto", choices=list(KERNELS),
                        help="how NG-GNN's per-edge work runs (auto: Triton on CUDA, PyTorch elsewhere)")
    parser.add_argument("--batch", type=int, default=128,
                        help="batch of the model's own forward and backward, timed for the optimizer's share")
    parser.add_argument("--shipped", action="store_true",
                        help="also time NeuralGraphOptimizer(model), the shipped default weights and rule")
    args = parser.parse_args()
    device = torch.device(args.device)
    autocast = True if args.autocast else False if args.no_autocast else None
    cuda = device.type == "cuda"
    rows, variants = [], set()
    for size in args.sizes:
        torch.manual_seed(0)
        model = mlp(SIZES[size]).to(device)
        model_ms = _model_step_ms(model, args.batch, device)
        model = _with_grads(model)
        n_params = sum(p.numel() for p in model.parameters())
        adam = torch.optim.Adam(model.parameters(), lr=1e-6)
        # Adam's step time depends on glibc's adaptive mmap threshold (its per-step temporaries
        # are page-faulted in or reused depending on what ran before): time it before and after
        # the learned optimizers and compare against the faster, which is conservative.
        adam_before = median_ms(adam.step, repeats=100, warmup=10)
        adam_state = _state_bytes_per_param(adam, n_params)
        row = {"size": size, "params": n_params, "adam_state_bytes_per_param": adam_state,
               "model_step_ms": round(model_ms, 3), "model_batch": args.batch, "nets": {}}
        timings = {}
        for net in [*args.nets, *(["shipped"] if args.shipped else [])]:
            settings = dict(weights=None, net=net) if net != "shipped" else {}
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            opt = NeuralGraphOptimizer(model, lr=1e-3, autocast=autocast, compile=args.compile, kernels=args.kernels,
                                       **settings)
            ms = median_ms(opt.step, repeats=args.repeats, warmup=3 if args.compile else 1)
            memory = {k: v / n_params for k, v in opt.memory_bytes().items()}
            if cuda:  # the optimizer's state, workspace, graph and the step's temporaries at their peak
                memory["peak_extra"] = (torch.cuda.max_memory_allocated(device) - before) / n_params
            how = {"kernels": opt.kernels_in_use(device), "autocast_bf16": opt.autocast_in_use(device)}
            variants.add((how["kernels"], how["autocast_bf16"]))
            timings[net] = (ms, memory, how)
            del opt
        adam_after = median_ms(adam.step, repeats=100, warmup=10)
        adam_ms = min(adam_before, adam_after)
        row.update(adam_ms=round(adam_ms, 3), adam_ms_before=round(adam_before, 3),
                   adam_ms_after=round(adam_after, 3))
        for net, (ms, memory, how) in timings.items():
            row["nets"][net] = {"step_ms": round(ms, 2), "ratio_to_adam": round(ms / adam_ms, 1),
                                "share_of_training_step": round(ms / (ms + model_ms), 3), **how,
                                **{f"{k}_bytes_per_param": round(v, 2) for k, v in memory.items()}}
            peak = f", peak extra {memory['peak_extra']:.0f} B/param" if "peak_extra" in memory else ""
            print(f"{size:>5} {net:<7} {ms:9.1f} ms  {ms / adam_ms:7.1f}x Adam ({adam_ms:.2f} ms), "
                  f"{ms / (ms + model_ms):.0%} of a training step ({how['kernels']}, "
                  f"{'bf16' if how['autocast_bf16'] else 'fp32'}){peak}", flush=True)
        rows.append(row)
    info = machine()
    label = info.get("gpu") if device.type == "cuda" else info["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", str(label).lower()).strip("-")
    one_m = next((r for r in rows if r["size"] == "1M"), None)
    result = {"benchmark": "step_cost", "command": "python benchmarks/step_cost.py " + " ".join(sys.argv[1:]),
              "machine": info, "device": str(device), "autocast": {True: "on", False: "off", None: "default"}[autocast],
              "compile": args.compile, "kernels": args.kernels, "results": rows}
    if one_m is not None and "ng-gnn" in one_m["nets"] and device.type == "cpu":
        ratio = one_m["nets"]["ng-gnn"]["ratio_to_adam"]
        result["target"] = {"what": "NG-GNN step at 1M params <= 100x Adam on CPU", "ratio": ratio,
                            "met": ratio <= 100}
    big = next((r for r in rows if r["size"] == "37M"), None)
    if big is not None and "ng-gnn" in big["nets"] and device.type == "cuda":
        ms = big["nets"]["ng-gnn"]["step_ms"]
        result["target"] = {"what": "NG-GNN step at ~37M params <= 20 ms on an H100", "step_ms": ms,
                            "met": ms <= 20}
    triton = any(k == "triton" for k, _ in variants)
    bf16 = any(b for _, b in variants)
    variant = "".join(["_triton" if triton else "", "_bf16" if bf16 else "", "_compiled" if args.compile else ""])
    path = write_result(f"step_cost_{device.type}_{slug}{variant}.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Where one optimizer step spends its time: torch.profiler over a few steps of one net on one
MLP size, top operators by device (or CPU) self time.

Run: ``python benchmarks/profile_step.py --device cuda --size 37M [--autocast] [--kernels triton]``. Prints the
table; with ``--out DIR`` also writes it there as text.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from step_cost import SIZES, _with_grads

from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.tasks import mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="1M", choices=list(SIZES))
    parser.add_argument("--net", default="ng-gnn")
    parser.add_argument("--autocast", action="store_true")
    parser.add_argument("--kernels", default="torch", choices=["auto", "triton", "torch"],
                        help="how NG-GNN's per-edge work runs (Triton: bf16 unless --fp32)")
    parser.add_argument("--fp32", action="store_true", help="no autocast even with the Triton kernels")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = _with_grads(mlp(SIZES[args.size]).to(device))
    autocast = True if args.autocast else False if args.fp32 else None
    opt = NeuralGraphOptimizer(model, weights=None, net=args.net, lr=1e-3, autocast=autocast, kernels=args.kernels)
    kernels, bf16 = opt.kernels_in_use(device), opt.autocast_in_use(device)
    for _ in range(2):
        opt.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)
    title = f"{args.net} {args.size} {device} kernels={kernels} autocast={bf16}, {args.steps} steps"
    print(title, table, sep="\n")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"profile_{args.net}_{args.size}_{device.type}{'_triton' if kernels == 'triton' else ''}" \
               f"{'_bf16' if bf16 else ''}.txt"
        (args.out / name).write_text(title + "\n" + table)


if __name__ == "__main__":
    main()

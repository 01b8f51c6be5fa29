"""INR fitting throughput: SIRENs fitted per second by the batched fitter, on CPU or GPU.

Run: ``python benchmarks/inr_fit.py [--device cuda] [--count 1024] [--batch 256] [--threads 1]``.
Fits the first ``count`` MNIST training images with the settings of ``l2o-graphs inr make``
(``FIT_STEPS`` Adam steps at ``FIT_LR``) in batches of ``batch``; writes
``benchmarks/results/inr_fit_<machine>.json`` (INRs per second, mean and worst PSNR).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from common import add_run_options, cpu_slug, machine, parse_run_args, write_result

from l2o_graphs.data import load_images
from l2o_graphs.inr import FIT_LR, FIT_STEPS, fit_sirens
from l2o_graphs.inr.fit import CPU_CHUNK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256, help="INRs per fit_sirens call (as a shard of inr make)")
    parser.add_argument("--chunk", type=int,
                        help="INRs fitted at once within a call (default: fit_sirens's, CPU_CHUNK on a CPU)")
    add_run_options(parser)
    args = parse_run_args(parser)
    images = load_images("mnist", "train")[0][:args.count, 0].to(args.device)
    fit_sirens(images[:8], list(range(8)), steps=2)  # warm-up (kernels, allocator)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    psnr = []
    for a in range(0, args.count, args.batch):
        _, p = fit_sirens(images[a:a + args.batch], list(range(a, min(args.count, a + args.batch))),
                          chunk=args.chunk)
        psnr.append(p.cpu())
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    psnr = torch.cat(psnr)
    info = machine()
    where = info.get("gpu", "cpu") if args.device.startswith("cuda") else cpu_slug(info)
    name = f"inr_fit_{str(where).lower().replace(' ', '-')}{'_' + args.tag if args.tag else ''}.json"
    payload = {"benchmark": "inr_fit", "command": "python benchmarks/inr_fit.py " + " ".join(sys.argv[1:]),
               "machine": info, "device": args.device, "count": args.count, "batch": args.batch,
               "chunk": args.chunk or (CPU_CHUNK if args.device == "cpu" else args.batch),
               "steps": FIT_STEPS, "lr": FIT_LR, "seconds": round(seconds, 1),
               "inrs_per_second": round(args.count / seconds, 2), "psnr_mean": round(float(psnr.mean()), 2),
               "psnr_min": round(float(psnr.min()), 2)}
    print(f"wrote {write_result(name, payload)}")
    print(f"{args.count} INRs in {seconds:.1f} s: {args.count / seconds:.1f} INRs/s on {args.device} "
          f"(PSNR mean {float(psnr.mean()):.1f} dB, min {float(psnr.min()):.1f} dB)")


if __name__ == "__main__":
    main()

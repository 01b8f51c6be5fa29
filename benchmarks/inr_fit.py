"""INR fitting throughput: SIRENs fitted per second by the batched fitter, on CPU or GPU.

Run: ``python benchmarks/inr_fit.py [--device cuda] [--count 1024] [--batch 256] [--modes eager compiled] [--threads 1]``.
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


def _timed_fit(images: torch.Tensor, args: argparse.Namespace, chunk: int, compile: bool) -> dict:
    """Fit every image in batches of ``args.batch`` after a warm-up; seconds and PSNR."""
    warm = time.perf_counter()
    # warm-up (kernels, allocator; compilation for the chunk shape the timed fits use)
    fit_sirens(images[:chunk], list(range(chunk)), steps=2, chunk=chunk, compile=compile)
    warm = time.perf_counter() - warm
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    psnr = []
    for a in range(0, args.count, args.batch):
        _, p = fit_sirens(images[a:a + args.batch], list(range(a, min(args.count, a + args.batch))), chunk=chunk,
                          compile=compile)
        psnr.append(p.cpu())
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    psnr = torch.cat(psnr)
    return {"compile": compile, "warm_up_seconds": round(warm, 1), "seconds": round(seconds, 1),
            "inrs_per_second": round(args.count / seconds, 2), "psnr_mean": round(float(psnr.mean()), 2),
            "psnr_min": round(float(psnr.min()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256, help="INRs per fit_sirens call (as a shard of inr make)")
    parser.add_argument("--chunk", type=int,
                        help="INRs fitted at once within a call (default: fit_sirens's, CPU_CHUNK on a CPU)")
    parser.add_argument("--modes", nargs="+", choices=("eager", "compiled"), default=["eager"],
                        help="fit without and/or through torch.compile, one after the other in this process "
                             "(compilation happens in each mode's warm-up)")
    add_run_options(parser)
    args = parse_run_args(parser)
    images = load_images("mnist", "train")[0][:args.count, 0].to(args.device)
    chunk = args.chunk or (CPU_CHUNK if args.device == "cpu" else args.batch)
    runs = [_timed_fit(images, args, chunk, mode == "compiled") for mode in args.modes]
    info = machine()
    where = info.get("gpu", "cpu") if args.device.startswith("cuda") else cpu_slug(info)
    name = f"inr_fit_{str(where).lower().replace(' ', '-')}{'_' + args.tag if args.tag else ''}.json"
    payload = {"benchmark": "inr_fit", "command": "python benchmarks/inr_fit.py " + " ".join(sys.argv[1:]),
               "machine": info, "device": args.device, "count": args.count, "batch": args.batch, "chunk": chunk,
               "steps": FIT_STEPS, "lr": FIT_LR, **runs[0], "modes": dict(zip(args.modes, runs))}
    print(f"wrote {write_result(name, payload)}")
    for mode, run in zip(args.modes, runs):
        print(f"{mode}: {args.count} INRs in {run['seconds']:.1f} s: {run['inrs_per_second']:.1f} INRs/s on "
              f"{args.device} (PSNR mean {run['psnr_mean']:.1f} dB, min {run['psnr_min']:.1f} dB)")


if __name__ == "__main__":
    main()

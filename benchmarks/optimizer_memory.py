"""Peak extra memory of NeuralGraphOptimizer per graph position, against the estimate that refuses
models that do not fit (``l2o_graphs.optim.memory.PEAK_BYTES_PER_POSITION``).

Each model runs in a fresh process (peak RSS only grows): the process's peak resident memory is
read after the model's gradients exist, after the optimizer is built and after its first step;
the increase, divided by :func:`~l2o_graphs.optim.memory.graph_positions`, is the figure.

Run: ``OMP_NUM_THREADS=1 python benchmarks/optimizer_memory.py``; writes
``benchmarks/results/optimizer_memory_<cpu>.json``. ``--kernels triton`` (with
``TRITON_INTERPRET=1`` on a CPU) measures the path GPUs take by default, NG-GNN's Triton kernels
with bfloat16 storage: ``..._triton-bf16.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import cpu_slug, machine, write_result

from l2o_graphs.optim.memory import PEAK_BYTES_PER_POSITION

MODELS = {
    "mlp-2000-2000-500": "torch.nn.Sequential(torch.nn.Linear(2000, 2000), torch.nn.ReLU(), torch.nn.Linear(2000, 500))",
    "cnn-256-512-512-k3": ("torch.nn.Sequential(torch.nn.Conv2d(3, 256, 3, padding=1), torch.nn.ReLU(), "
                           "torch.nn.Conv2d(256, 512, 3, padding=1), torch.nn.ReLU(), "
                           "torch.nn.Conv2d(512, 512, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), "
                           "torch.nn.Flatten(), torch.nn.Linear(512, 10))"),
}
INPUTS = {"mlp-2000-2000-500": "torch.randn(64, 2000)", "cnn-256-512-512-k3": "torch.randn(4, 3, 8, 8)"}

CHILD = """
import json, resource, torch
torch.set_num_threads(1)
from l2o_graphs import NeuralGraphOptimizer
from l2o_graphs.optim.memory import graph_positions
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
settings = dict(kernels={kernels!r}, autocast={autocast!r})
warm = torch.nn.Linear(3, 2)  # imports and first-call set-up (Triton's, with the kernels) before measuring
warm(torch.randn(1, 3)).sum().backward()
NeuralGraphOptimizer(warm, **settings).step()
del warm
model = {model}
model({inputs}).square().mean().backward()
before = peak()
opt = NeuralGraphOptimizer(model, **settings)
built = peak()
opt.step()
stepped = peak()
positions = graph_positions([p.shape for p in model.parameters()])
print(json.dumps({{"parameters": sum(p.numel() for p in model.parameters()), "positions": positions,
                  "build_bytes_per_position": round((built - before) / positions, 1),
                  "peak_bytes_per_position": round((stepped - before) / positions, 1),
                  "held_bytes": opt.memory_bytes()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", default="torch", choices=["torch", "triton"],
                        help="triton: NG-GNN's kernels with bf16 storage, as on a GPU (on a CPU through Triton's "
                             "interpreter: set TRITON_INTERPRET=1; slow, minutes per model)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    autocast = True if args.kernels == "triton" else None
    rows = {}
    for name in args.models:
        child = CHILD.format(model=MODELS[name], inputs=INPUTS[name], kernels=args.kernels, autocast=autocast)
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, rows[name])
    info = machine()
    suffix = "" if args.kernels == "torch" else "_triton-bf16"
    path = write_result(f"optimizer_memory_{cpu_slug(info)}{suffix}.json", {
        "benchmark": "optimizer_memory", "command": "python benchmarks/optimizer_memory.py " + " ".join(sys.argv[1:]),
        "machine": info, "kernels": args.kernels, "bf16_storage": bool(autocast),
        "estimate_bytes_per_position": PEAK_BYTES_PER_POSITION, "models": rows,
        "estimate_covers_all": all(r["peak_bytes_per_position"] <= PEAK_BYTES_PER_POSITION for r in rows.values())})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

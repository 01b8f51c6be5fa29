#!/usr/bin/env bash
# Every GPU check of the optimizer in one call, for a machine with an NVIDIA GPU (the device tool
# runs it in a copy of the repository): `bash benchmarks/gpu_checks.sh [PART ...]`, PARTs among
# tests, kernels, baseline, eager, bf16, compiled, inr (default: all). The Triton kernels' checks
# (issue 16) are `tests kernels baseline`, about six minutes in all. Uses the machine's own torch and torch-geometric;
# needs no .venv (pytest is installed from .gpu_wheels/ when missing: `pip download pytest -d
# .gpu_wheels`). Writes logs and JSON into $OUT when set (the device tool's output folder), else
# into benchmarks/results/. Each part has its own time limit so that one slow part cannot eat
# the others' time.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
parts="${*:-tests kernels baseline eager bf16 compiled inr}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torch_geometric; print('torch', torch.__version__, 'pyg', torch_geometric.__version__)" \
    | tee -a "$out/gpu.txt"
step_cost() {  # step_cost SECONDS ARGS...: one step_cost.py run under a time limit
    local limit="$1"; shift
    timeout "$limit" python3 benchmarks/step_cost.py --device cuda --repeats 10 "$@" 2>&1 | tee -a "$out/gpu_step_cost.log"
}
for part in $parts; do
    case "$part" in
    tests)  # every net's CUDA step against its CPU step; bf16 autocast and torch.compile against eager;
            # the Triton kernels compiled, against the PyTorch path at size (float32 and bf16)
        python3 -c "import pytest" 2>/dev/null || pip install -q --no-index --find-links .gpu_wheels pytest
        timeout 180 python3 -m pytest -q -p no:cacheprovider -p no:logging -k cuda tests/test_optimizer_behaviour.py \
            tests/test_edge_kernels.py 2>&1 | tee "$out/gpu_tests.log" ;;
    kernels)  # NG-GNN's step with the Triton kernels: bf16 (the default on CUDA) and float32, its profile,
              # and the outputs' distance to the float32 PyTorch path
        timeout 60 python3 benchmarks/kernel_tolerance.py --device cuda 2>&1 | tee "$out/gpu_kernel_tolerance.log"
        cp benchmarks/results/kernel_tolerance_cuda_*.json "$out/" 2>/dev/null || true
        step_cost 150 --sizes 1M 10M 37M --nets ng-gnn --kernels triton
        step_cost 60 --sizes 37M --nets ng-gnn --kernels triton --no-autocast
        timeout 60 python3 benchmarks/profile_step.py --device cuda --size 37M --kernels triton --out "$out" \
            2>&1 | tail -40 ;;
    baseline)  # the compiled PyTorch path the kernels must not be slower than
        step_cost 240 --sizes 1M 10M --nets ng-gnn --kernels torch --compile ;;
    eager) step_cost 120 --sizes 0.1M 1M 10M 37M --kernels torch --no-autocast ;;
    bf16) step_cost 50 --sizes 1M 10M 37M --nets ng-gnn ff --kernels torch --autocast ;;
    compiled)
        step_cost 200 --sizes 1M 37M --nets ng-gnn --compile --no-autocast
        step_cost 120 --sizes 37M --nets ng-gnn --compile --autocast ;;
    inr)  # SIREN fitting throughput (needs MNIST: .gpu_data/ carried, or L2O_GRAPHS_DATA pointing at it)
        timeout 120 python3 benchmarks/inr_fit.py --device cuda --count 16384 --batch 4096 2>&1 | tee "$out/gpu_inr_fit.log"
        cp benchmarks/results/inr_fit_*.json "$out/" 2>/dev/null || true ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
cp benchmarks/results/step_cost_cuda_*.json "$out/" 2>/dev/null || true

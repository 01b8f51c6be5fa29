#!/usr/bin/env bash
# Every GPU check of the optimizer in one call, for a machine with an NVIDIA GPU (the device tool
# runs it in a copy of the repository): `bash benchmarks/gpu_checks.sh [PART ...]`, PARTs among
# tests, eager, bf16, compiled, inr (default: all). Uses the machine's own torch and torch-geometric;
# needs no .venv (pytest is installed from .gpu_wheels/ when missing: `pip download pytest -d
# .gpu_wheels`). Writes logs and JSON into $OUT when set (the device tool's output folder), else
# into benchmarks/results/. Each part has its own time limit so that one slow part cannot eat
# the others' time.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
parts="${*:-tests eager bf16 compiled inr}"
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
    tests)  # every net's CUDA step against its CPU step; bf16 autocast and torch.compile against eager
        python3 -c "import pytest" 2>/dev/null || pip install -q --no-index --find-links .gpu_wheels pytest
        timeout 120 python3 -m pytest -q -p no:cacheprovider -p no:logging -k cuda tests/test_optimizer_behaviour.py \
            2>&1 | tee "$out/gpu_tests.log" ;;
    eager) step_cost 120 --sizes 0.1M 1M 10M 37M ;;
    bf16) step_cost 50 --sizes 1M 10M 37M --nets ng-gnn ff --autocast ;;
    compiled)
        step_cost 200 --sizes 1M 37M --nets ng-gnn --compile
        step_cost 120 --sizes 37M --nets ng-gnn --compile --autocast ;;
    inr)  # SIREN fitting throughput (needs MNIST: .gpu_data/ carried, or L2O_GRAPHS_DATA pointing at it)
        timeout 120 python3 benchmarks/inr_fit.py --device cuda --count 16384 --batch 4096 2>&1 | tee "$out/gpu_inr_fit.log"
        cp benchmarks/results/inr_fit_*.json "$out/" 2>/dev/null || true ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
cp benchmarks/results/step_cost_cuda_*.json "$out/" 2>/dev/null || true

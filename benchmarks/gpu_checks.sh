#!/usr/bin/env bash
# Every GPU check of the optimizer in one call, for a machine with an NVIDIA GPU (the device tool
# runs it in a copy of the repository: `bash benchmarks/gpu_checks.sh`). Uses the machine's own
# torch and torch-geometric; needs no .venv (pytest is installed from .gpu_wheels/ when missing:
# `pip download pytest -d .gpu_wheels`). Writes logs and JSON into $OUT when set (the device
# tool's output folder), else into benchmarks/results/. Each part has its own time limit so that
# one slow part cannot eat the others' time.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torch_geometric; print('torch', torch.__version__, 'pyg', torch_geometric.__version__)" \
    | tee -a "$out/gpu.txt"
python3 -c "import pytest" 2>/dev/null || pip install -q --no-index --find-links .gpu_wheels pytest
# CUDA behaviour: every net's CUDA step against its CPU step, bf16 autocast and torch.compile
timeout 100 python3 -m pytest -q -p no:cacheprovider -k cuda tests/test_optimizer_behaviour.py \
    2>&1 | tee "$out/gpu_tests.log"
# step cost: eager float32 for every net, then NG-GNN with bf16 autocast, then with torch.compile
timeout 120 python3 benchmarks/step_cost.py --device cuda --sizes 0.1M 1M 10M 37M --repeats 10 \
    2>&1 | tee "$out/gpu_step_cost.log"
timeout 50 python3 benchmarks/step_cost.py --device cuda --sizes 1M 10M 37M --nets ng-gnn ff --repeats 10 --autocast \
    2>&1 | tee -a "$out/gpu_step_cost.log"
timeout 130 python3 benchmarks/step_cost.py --device cuda --sizes 1M 37M --nets ng-gnn --repeats 10 --autocast --compile \
    2>&1 | tee -a "$out/gpu_step_cost.log"
cp benchmarks/results/step_cost_cuda_*.json "$out/" 2>/dev/null || true

#!/usr/bin/env bash
# Every GPU check of the optimizer in one call, for a machine with an NVIDIA GPU (the device tool
# runs it in a copy of the repository: `bash benchmarks/gpu_checks.sh`). Uses the machine's own
# torch and torch-geometric; needs no .venv. Writes its logs and JSON into $OUT when set (the
# device tool's output folder) and into benchmarks/results/.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, torch_geometric; print('torch', torch.__version__, 'pyg', torch_geometric.__version__)"
# CUDA behaviour and equivariance (the CUDA test is skipped on CPU machines)
python3 -m pytest -q -p no:cacheprovider tests/test_optimizer_behaviour.py tests/test_optimizer_equivariance.py \
    2>&1 | tee "$out/gpu_tests.log"
# step cost on the GPU: eager float32, then bf16 autocast + torch.compile
python3 benchmarks/step_cost.py --device cuda --sizes 0.1M 1M 10M 37M --nets ng-gnn ff --repeats 10 \
    2>&1 | tee "$out/gpu_step_cost.log"
python3 benchmarks/step_cost.py --device cuda --sizes 1M 10M 37M --nets ng-gnn --repeats 10 --autocast --compile \
    2>&1 | tee -a "$out/gpu_step_cost.log"
cp benchmarks/results/step_cost_cuda_*.json "$out/" 2>/dev/null || true

#!/usr/bin/env bash
# Meta-training on a GPU machine, a few outer steps: checks that `--device auto` trains on CUDA and
# measures seconds per outer step (eager float32, then bf16 autocast). The device tool runs it in a
# copy of the repository with .gpu_data/ (MNIST's idx files: mkdir -p .gpu_data/mnist and copy the
# four *-ubyte.gz files there) and .gpu_wheels/ (pip download tqdm pyyaml pytest -d .gpu_wheels)
# carried along, since that machine has no network. Writes into $OUT (else /tmp/gpu_meta).
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 L2O_GRAPHS_DATA="$PWD/.gpu_data"
out="${OUT:-/tmp/gpu_meta}"
mkdir -p "$out"
python3 -c "import yaml, tqdm" 2>/dev/null || pip install -q --no-index --find-links .gpu_wheels pyyaml tqdm
cat > "$out/suite.yaml" <<'YAML'
name: mixed-small-mnist
datasets: [mnist]
batch_sizes: [32, 64, 128]
architectures:
  - {kind: mlp, hidden_layers: [1, 4], width: [16, 256], activations: [relu, gelu, tanh, silu]}
  - {kind: cnn, conv_layers: [2, 5], channels: [8, 64], kernels: [3, 5], heads: [pool, flatten],
     activations: [relu, gelu, tanh, silu], residual: [false, true], batchnorm: [false, true]}
YAML
for variant in "" "--autocast"; do
    run="$out/run${variant:+_bf16}"
    timeout 80 python3 -m l2o_graphs.cli meta-train --config configs/meta-default.yaml --suite "$out/suite.yaml" \
        --outer-steps 12 --device auto --no-progress --run-dir "$run" $variant 2>&1 | grep -v -i warn | tail -3
    python3 - "$run" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
print(sys.argv[1], "steps", len(rows), "median s/step (after 2)", round(statistics.median(r["seconds"] for r in rows[2:]), 3),
      "meta-loss", [round(r["meta_loss"], 3) for r in rows])
PY
done

#!/usr/bin/env bash
# CPU training-step time of labbook against PyTorch, same model, shape and machine, one after
# the other in one run: Mamba against `mambapy` 1.2.0 (parallel scan), and the Transformer or
# hybrid against the same blocks in PyTorch with `scaled_dot_product_attention` (causal). Installs torch and
# mambapy into a local virtualenv (.venv-bench/, git-ignored; torch is a large download the
# first time). Prints both medians and their ratio.
#
#   scripts/bench-vs-pytorch.sh [d_model layers seq_len batch [steps [model]]]
#       (default 64 2 256 8 10 mamba; model: mamba, transformer or hybrid)
#
# Both sides: vocab 16, full LM loss on every position, Adam(W), d_state 16, expand 2,
# 2 untimed warm-up steps, median of `steps` timed steps, all cores of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-64} L=${2:-2} S=${3:-256} B=${4:-8} STEPS=${5:-10} MODEL=${6:-mamba}
VENV=${VENV:-.venv-bench}

if ! "$VENV/bin/python" -c 'import torch, mambapy, einops' 2>/dev/null; then
    python3 -m venv "$VENV"
    # einops: mambapy imports it; numpy: silences torch's warning.
    "$VENV/bin/pip" install -q torch mambapy==1.2.0 einops numpy
fi
cargo build --release -q -p labbook-models --example bench

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ours=$(target/release/examples/bench "$STEPS" ndarray --models "$MODEL" --shape "$D,$L,$S,$B")
echo "load average between: $(cut -d' ' -f1-3 /proc/loadavg)"
theirs=$("$VENV/bin/python" -W ignore scripts/mambapy_bench.py --device cpu \
    "$STEPS" "$D" "$L" "$S" "$B" "$MODEL")
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"shape: d_model {ours['d_model']}, {ours['layers']} layers, seq_len {ours['seq_len']}, "
      f"batch {ours['batch']}, {ours['steps']} timed steps")
print(f"labbook ({ours['backend']}): median {ours['ms_per_step']:.1f} ms/step "
      f"(min {ours['ms_per_step_min']:.1f})")
print(f"{theirs['backend']}: median {theirs['ms_per_step']:.1f} ms/step "
      f"(min {theirs['ms_per_step_min']:.1f})")
print(f"speed-up (PyTorch median / labbook median): {theirs['ms_per_step'] / ours['ms_per_step']:.2f}x")
PY

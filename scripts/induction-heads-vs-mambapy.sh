#!/usr/bin/env bash
# Induction-heads length extrapolation of labbook's Mamba and of the PyTorch reference
# `mambapy` 1.2.0, trained with the same recipe (configs/induction-heads-mamba.toml), for each
# `[train] state_init`. Run by hand (minutes per run; not in CI). Installs torch and mambapy
# into .venv-bench/ (git-ignored) the first time.
#
#   scripts/induction-heads-vs-mambapy.sh [steps [state_init...]]   (default 10000 zeros noise carry)
#
# Prints one line per run: labbook's `eval` line, then mambapy's JSON. Both use the config's
# weight decay (0; set WD and pass train.weight_decay through the config to change both).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10000}
shift || true
INITS=${*:-zeros noise carry}
LENS=${LENS:-64,256,1024,4096}
VENV=${VENV:-.venv-bench}

if ! "$VENV/bin/python" -c 'import torch, mambapy, einops' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch mambapy==1.2.0 einops numpy
fi
cargo build --release -q -p labbook-models --example run
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
for init in $INITS; do
    echo "== state_init = $init, $STEPS steps"
    target/release/examples/run configs/induction-heads-mamba.toml "train.steps=$STEPS" \
        "train.state_init=$init" "task.eval_seq_lens=[$LENS]" | grep '^eval' | tail -1 |
        sed 's/^/labbook: /'
    "$VENV/bin/python" -W ignore scripts/induction_heads_mambapy.py --steps "$STEPS" \
        --state-init "$init" --weight-decay "${WD:-0}" --eval-lens "$LENS" | tail -1 |
        sed 's/^/mambapy: /'
done

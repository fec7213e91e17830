#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and the CUDA toolkit: run the engine's correctness tests on
# CUDA (golden Mamba test included) and the training-step benchmark with backend cuda.
# Not run in the session that wrote it (no GPU there); see docs/engine.md.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv || true

# Golden test (mambapy float64 reference) on Autodiff<Cuda>, plus the rest of the engine tests.
cargo test -p labbook-models --features cuda --test golden -- --nocapture golden_mamba_cuda
cargo test -p labbook-models --features cuda

# Training-step throughput: d_model 64, 2 layers, seq 256, batch 8, 20 timed steps.
cargo run --release -p labbook-models --features cuda --example bench -- 20 cuda flex

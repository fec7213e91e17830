#!/usr/bin/env bash
# CUDA checks for the engine: the CubeCL selective-scan kernel against the host reference (output
# and all six gradients; f32, and bf16 inputs), the golden Mamba file, the CubeCL attention kernels
# (forward and backward) against plain attention, data parallel, bf16/f16 runs against f32 loss
# curves, then training-step tokens/s for Mamba, hybrid and Transformer at d_model 768, seq_len
# 2048, in f32 and bf16, next to mambapy 1.2.0 / PyTorch (SDPA, autocast for bf16) on the same GPU.
#
#   scripts/cuda-check.sh            on a machine with cargo AND an NVIDIA GPU: build, then run all
#   scripts/cuda-check.sh prepare    on a machine with cargo (no GPU needed, must be x86-64 Linux):
#                                    build release test/bench binaries for --features cuda into
#                                    .cuda-check/bin and fetch the mambapy wheel into .cuda-check/whl
#   scripts/cuda-check.sh device     on the GPU machine (no cargo, no internet): run the prepared
#                                    binaries and the PyTorch bench; needs python3 with torch (CUDA)
#
# With the workplace's device machine (nvidia-h200: CUDA toolkit and PyTorch, no Rust, no
# network): run `prepare` here, then the device tool with carry [".cuda-check"] and the command
# `bash scripts/cuda-check.sh device` (timeout 600 s; takes ~3-6 min). Results (log, JSON lines,
# a markdown table) are written to $OUT (or .cuda-check/out when OUT is unset).
#
# Sizes (env): BENCH_STEPS (10), BENCH_LAYERS (4), BENCH_BATCH (8), BENCH_DMODEL (768),
# BENCH_SEQ (2048). Default: 4 layers (mamba: MMMM; hybrid: MAMA), batch 8 × 2048 tokens.
# Not yet run on a GPU by the session that wrote it; see docs/performance.md. (The attention
# check and the Transformer rows were added on 2026-12-05, the data-parallel check 2c on
# 2026-12-05 too, also without a GPU; the precision check 2d and the bf16 rows on 2026-12-05,
# their f16 path run through wgpu on lavapipe.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUNDLE=.cuda-check
STEPS=${BENCH_STEPS:-10}
LAYERS=${BENCH_LAYERS:-4}
BATCH=${BENCH_BATCH:-8}
DMODEL=${BENCH_DMODEL:-768}
SEQ=${BENCH_SEQ:-2048}
MODE=${1:-all}

prepare() {
    mkdir -p "$BUNDLE/bin" "$BUNDLE/whl"
    if [ -d .git ] || [ -f .git ]; then
        local exclude
        exclude=$(git rev-parse --git-path info/exclude)
        grep -qxF "/$BUNDLE/" "$exclude" 2>/dev/null || echo "/$BUNDLE/" >>"$exclude"
    fi
    # Test binaries (release: the NdArray reference side is then fast too) and the bench.
    cargo test --release -p labbook-models --features cuda --no-run \
        --test scan_cubecl --test golden --test attention --test parallel --test precision \
        --message-format=json >"$BUNDLE/build.json"
    python3 - "$BUNDLE" <<'EOF'
import json, shutil, sys
bundle = sys.argv[1]
for line in open(f"{bundle}/build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("scan_cubecl", "golden", "attention", "parallel", "precision"):
        shutil.copy(m["executable"], f"{bundle}/bin/{m['target']['name']}")
EOF
    cargo build --release -p labbook-models --features cuda --example bench_cuda
    cp target/release/examples/bench_cuda "$BUNDLE/bin/"
    strip "$BUNDLE"/bin/* 2>/dev/null || true
    # The device tool carries at most 64 MiB (repo included): ship the binaries gzipped.
    gzip -9 -f "$BUNDLE"/bin/scan_cubecl "$BUNDLE"/bin/golden "$BUNDLE"/bin/attention \
        "$BUNDLE"/bin/parallel "$BUNDLE"/bin/precision "$BUNDLE"/bin/bench_cuda
    # The golden test reads tests/data through the absolute path it was compiled with.
    echo "$ROOT/models" >"$BUNDLE/manifest_dir"
    # mambapy is pure Python (needs torch, which the device image has).
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$BUNDLE/whl" mambapy==1.2.0 ||
        echo "warning: could not fetch the mambapy wheel; step 4 then needs mambapy installed" >&2
    rm -f "$BUNDLE/build.json"
    ls -l "$BUNDLE/bin" "$BUNDLE/whl"
    local kib
    kib=$(du -sk "$BUNDLE" | cut -f1)
    echo "bundle: $((kib / 1024)) MiB (the device tool carries at most 64 MiB, repo included)"
}

device() {
    local out=${OUT:-$BUNDLE/out}
    mkdir -p "$out"
    exec > >(tee "$out/cuda-check.log") 2>&1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    # cubecl-cuda compiles kernels with NVRTC and needs the CUDA headers (CUDA_PATH or
    # /usr/local/cuda); cudarc loads libcuda and libnvrtc at run time.
    if [ -z "${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda/include ] && command -v nvcc >/dev/null; then
        CUDA_PATH=$(dirname "$(dirname "$(command -v nvcc)")")
        export CUDA_PATH
    fi
    local cuda=${CUDA_PATH:-/usr/local/cuda}
    export LD_LIBRARY_PATH="$cuda/lib64:$cuda/lib:${LD_LIBRARY_PATH:-}"
    # Across GPUs (step 2c) cubecl-cuda moves tensors and all-reduces with NCCL, which cudarc
    # loads at run time: use PyTorch's copy (the nvidia-nccl wheel) when the system has none.
    local nccl
    nccl=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0] + "/lib")' 2>/dev/null || true)
    if [ -n "$nccl" ] && [ -d "$nccl" ]; then
        export LD_LIBRARY_PATH="$nccl:$LD_LIBRARY_PATH"
    fi
    local bin=/tmp/cuda-check-bin
    mkdir -p "$bin"
    for f in scan_cubecl golden attention parallel precision bench_cuda; do
        gzip -dc "$BUNDLE/bin/$f.gz" >"$bin/$f"
        chmod +x "$bin/$f"
    done
    local manifest
    manifest=$(cat "$BUNDLE/manifest_dir")
    if [ "$manifest" != "$ROOT/models" ] && [ ! -e "$manifest/tests/data/mamba_tiny.safetensors" ]; then
        mkdir -p "$manifest/tests/data"
        cp models/tests/data/mamba_tiny.safetensors "$manifest/tests/data/"
    fi
    local status=0
    echo "== 1. kernel vs host reference (y and the six gradients), CUDA"
    "$bin/scan_cubecl" --nocapture --test-threads 1 cuda || status=1
    echo "== 2. golden Mamba file on Autodiff<Cuda>"
    "$bin/golden" --nocapture golden_mamba_cuda || status=1
    echo "== 2b. CubeCL attention kernels (o, dq, dk, dv; evaluation path) vs plain attention, CUDA"
    "$bin/attention" --nocapture device_attention_on_cuda || status=1
    echo "== 2c. data parallel over 2 GPUs (burn-collective), or grad_accum on 1, vs one GPU"
    local gpus
    gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
    LABBOOK_GPUS=${gpus:-1} "$bin/parallel" --nocapture data_parallel_on_cuda || status=1
    echo "== 2d. [train] precision: bf16 and f16 runs vs the f32 loss and grad-norm curves, CUDA"
    "$bin/precision" --nocapture --test-threads 1 cuda || status=1
    local models="mamba mamba@bf16 hybrid hybrid@bf16 transformer transformer@bf16"
    echo "== 3. labbook training step on CUDA: d_model $DMODEL, $LAYERS layers, seq $SEQ, batch $BATCH, $STEPS steps"
    # shellcheck disable=SC2086
    "$bin/bench_cuda" "$STEPS" "$DMODEL" "$LAYERS" "$SEQ" "$BATCH" $models \
        | tee "$out/labbook.jsonl" || status=1
    echo "== 4. mambapy 1.2.0 on PyTorch CUDA, same shapes"
    (
        if ls "$BUNDLE"/whl/mambapy-*.whl >/dev/null 2>&1; then
            python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
                --target /tmp/mambapy-site "$BUNDLE"/whl/mambapy-*.whl
        fi
        # shellcheck disable=SC2086
        PYTHONPATH=/tmp/mambapy-site PYTHONUNBUFFERED=1 python3 scripts/mambapy_bench.py \
            "$STEPS" "$DMODEL" "$LAYERS" "$SEQ" "$BATCH" $models
    ) | tee "$out/mambapy.jsonl" || status=1
    echo "== 5. table"
    python3 - "$out" <<'EOF' | tee "$out/table.md"
import json, sys
out = sys.argv[1]
rows = []
for name in ("labbook.jsonl", "mambapy.jsonl"):
    try:
        rows += [json.loads(l) for l in open(f"{out}/{name}") if l.startswith("{")]
    except FileNotFoundError:
        pass
print("| model | pattern | engine | precision | d_model | layers | seq_len | batch | ms/step (median) | tokens/s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in sorted(rows, key=lambda r: (r["model"], r["backend"], r.get("precision", "f32"))):
    print(f"| {r['model']} | {r['pattern']} | {r['backend']} | {r.get('precision', 'f32')} | "
          f"{r['d_model']} | {r['layers']} | {r['seq_len']} | {r['batch']} | "
          f"{r['ms_per_step']:.1f} | {r['tokens_per_s']:.0f} |")
EOF
    return $status
}

case "$MODE" in
prepare) prepare ;;
device) device ;;
all)
    prepare
    device
    ;;
*)
    echo "usage: $0 [prepare|device]" >&2
    exit 2
    ;;
esac

"""Training-step throughput of mambapy 1.2.0 (PyTorch) on CUDA or the CPU, shaped like
labbook's bench.

Same step as `bench_train` in models/src/train.rs: token embedding (vocab 16) → residual
blocks in a layer pattern → RMSNorm → LM head, cross-entropy over every position, AdamW
(lr 1e-3), 2 warm-up steps, median of the timed steps. `mamba` = mambapy's `Mamba` blocks
(parallel scan `pscan=True`, no CUDA extension) between our embedding, RMSNorm and head (as
`mambapy.lm.LM`, whose module imports the CUDA-only `mamba_ssm` for Mamba-2); `hybrid` =
mambapy `ResidualBlock`s for `M` and, for `A`, a block written here like labbook's
`AttentionBlock` (pre-RMSNorm, fused qkv, RoPE, causal softmax attention, out projection,
GELU MLP ×4), pattern `attn every 2nd layer`; `transformer` = that block in every layer.
Attention is `F.scaled_dot_product_attention(..., is_causal=True)` (PyTorch's fused kernel,
what labbook's fused CPU attention is compared with) or, with `--attention plain`, the
explicit `softmax(QKᵀ/√dh + mask)·V` that labbook's composed reference path computes.

A model may be written `mamba@bf16` (or `@f16`): the forward and loss then run under
`torch.autocast` in that type with f32 weights and AdamW state, PyTorch's mixed precision, as
labbook's `[train] precision` does (f16 also scales the loss with `torch.amp.GradScaler`).

Usage: python3 scripts/mambapy_bench.py STEPS D_MODEL LAYERS SEQ_LEN BATCH [model[@bf16]...]
           [--device cuda|cpu] [--attention sdpa|plain]
           (default cuda, sdpa; scripts/bench-vs-pytorch.sh uses cpu)
Prints one JSON line per model, with the fields of labbook's BenchResult.
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from mambapy.mamba import Mamba, MambaConfig, RMSNorm, ResidualBlock

VOCAB = 16


ATTENTION = "sdpa"


def pattern(model: str, layers: int) -> str:
    if model == "mamba":
        return "M" * layers
    if model == "transformer":
        return "A" * layers
    if model == "hybrid":  # labbook's pattern_attn_every(layers, 2)
        return "".join("A" if i % 2 == 0 else "M" for i in range(1, layers + 1))
    raise SystemExit(f"unknown model {model}")


def rope(x: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE, base 10000, on [batch, H, L, dh]."""
    _, _, length, dh = x.shape
    half = dh // 2
    inv = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class AttentionBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = RMSNorm(d, 1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.norm2 = RMSNorm(d, 1e-5)
        self.fc1 = nn.Linear(d, mlp_ratio * d)
        self.fc2 = nn.Linear(mlp_ratio * d, d)
        self.n_heads = n_heads

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        q, k, v = (
            t.reshape(b, length, h, dh).transpose(1, 2) for t in self.qkv(x).split(d, dim=2)
        )
        q, k = rope(q), rope(k)
        if ATTENTION == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(dh)
            mask = torch.full((length, length), -1e9, device=x.device).triu(1)
            o = torch.softmax(scores + mask, dim=3) @ v
        return self.out(o.transpose(1, 2).reshape(b, length, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class LM(nn.Module):
    """mambapy.lm.LM without its module's Mamba-2 import."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, cfg.d_model)
        self.mamba = Mamba(cfg)
        self.norm_f = RMSNorm(cfg.d_model, cfg.rms_norm_eps, cfg.mup)
        self.lm_head = nn.Linear(cfg.d_model, VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm_f(self.mamba(self.embedding(tokens))))


class HybridLM(nn.Module):
    def __init__(self, cfg: MambaConfig, pat: str, n_heads: int):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, cfg.d_model)
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg) if c == "M" else AttentionBlock(cfg.d_model, n_heads) for c in pat
        )
        self.norm_f = RMSNorm(cfg.d_model, 1e-5)
        self.lm_head = nn.Linear(cfg.d_model, VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.norm_f(x))


def bench(model: str, steps: int, d_model: int, layers: int, seq_len: int, batch: int,
          device: str, precision: str = "f32") -> dict:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    half = {"f32": None, "bf16": torch.bfloat16, "f16": torch.float16}[precision]
    # Only f16 scales its loss (torch.amp.GradScaler needs torch 2.3; f32 and bf16 do without).
    scaler = torch.amp.GradScaler(dev.type) if precision == "f16" else None

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    torch.manual_seed(0)
    pat = pattern(model, layers)
    # As labbook's `bench_heads`: the fewest heads, from 4 and from heads of at most 64, that
    # divide d_model into even sizes; else 1.
    n_heads = next((h for h in range(max(4, -(-d_model // 64)), d_model // 2 + 1)
                    if d_model % h == 0 and (d_model // h) % 2 == 0), 1)
    cfg = MambaConfig(d_model=d_model, n_layers=layers, d_state=16, expand_factor=2, d_conv=4,
                      pscan=True, use_cuda=False)
    lm = LM(cfg) if model == "mamba" else HybridLM(cfg, pat, n_heads)
    lm = lm.to(dev)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    warmup, times = 2, []
    for i in range(warmup + steps):
        tokens = torch.randint(0, VOCAB, (batch, seq_len + 1), device=dev)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=half or torch.bfloat16, enabled=half is not None):
            logits = lm(tokens[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    return {
        "model": model,
        "pattern": pat,
        "backend": f"mambapy 1.2.0 / torch {torch.__version__} {dev.type} (pscan, "
        f"{ATTENTION} attention)"
        + ("" if cuda else f", {torch.get_num_threads()} threads"),
        "precision": precision,
        "d_model": d_model,
        "layers": layers,
        "seq_len": seq_len,
        "batch": batch,
        "steps": steps,
        "warmup_steps": warmup,
        "ms_per_step": med,
        "ms_per_step_min": min(times),
        "tokens_per_s": batch * seq_len / (med / 1e3),
        "n_params": sum(p.numel() for p in lm.parameters()),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("steps", "d_model", "layers", "seq_len", "batch"):
        p.add_argument(name, type=int)
    p.add_argument("models", nargs="*", default=["mamba", "hybrid"])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--attention", choices=["sdpa", "plain"], default="sdpa")
    a = p.parse_args()
    global ATTENTION
    ATTENTION = a.attention
    torch.backends.cuda.matmul.allow_tf32 = False  # labbook runs plain f32 matmuls
    for spec in a.models:
        model, _, precision = spec.partition("@")
        if a.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = bench(model, a.steps, a.d_model, a.layers, a.seq_len, a.batch, a.device,
                       precision or "f32")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Times Adam training steps of a mambapy 1.2.0 Mamba LM (parallel scan) on the CPU.

Same shape as `labbook bench train --model mamba`: vocab 16, full LM loss on every position.
Prints one JSON line: median and fastest milliseconds per step after 2 warm-up steps.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from mambapy.mamba import Mamba, MambaConfig, RMSNorm


class LM(nn.Module):
    """mambapy.lm.LM without its Mamba-2 import (which needs the CUDA-only mamba_ssm)."""

    def __init__(self, cfg, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, cfg.d_model)
        self.mamba = Mamba(cfg)
        self.norm_f = RMSNorm(cfg.d_model, cfg.rms_norm_eps, cfg.mup)
        self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)

    def forward(self, tokens):
        return self.lm_head(self.norm_f(self.mamba(self.embedding(tokens))))


p = argparse.ArgumentParser()
p.add_argument("--d-model", type=int, default=64)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--seq-len", type=int, default=256)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
a = p.parse_args()

torch.manual_seed(0)
vocab = 16
cfg = MambaConfig(d_model=a.d_model, n_layers=a.layers, d_state=16, expand_factor=2, pscan=True)
model = LM(cfg, vocab)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
times = []
for i in range(a.warmup + a.steps):
    x = torch.randint(0, vocab, (a.batch, a.seq_len))
    y = torch.randint(0, vocab, (a.batch, a.seq_len))
    t0 = time.perf_counter()
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if i >= a.warmup:
        times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({
    "impl": f"mambapy 1.2.0 / torch {torch.__version__} ({torch.get_num_threads()} threads)",
    "d_model": a.d_model, "layers": a.layers, "seq_len": a.seq_len, "batch": a.batch,
    "steps": a.steps, "ms_per_step": statistics.median(times), "ms_per_step_min": min(times),
}))

"""Induction heads with the PyTorch reference Mamba (mambapy 1.2.0), trained with the recipe of
labbook's `configs/induction-heads-mamba.toml`, printing the same extrapolation table.

Run by hand through `scripts/induction-heads-vs-mambapy.sh` (it installs torch and mambapy into
a git-ignored virtualenv); not part of CI. Every claim about length extrapolation in
docs/results.md is checked against this independent implementation.

Recipe (as the config): 2 Mamba layers, d_model 64, d_state 16, expand 2, d_conv 4, vocabulary
16, trained at length 64, batch 16; AdamW betas (0.9, 0.95), eps 1e-8, weight decay
`--weight-decay` (default 0.1, the engine's default; the shipped config sets 0) except
A_log, D, biases, norms and the embedding; lr 3e-3 with 100 linear warm-up steps then cosine to
lr/10; gradient-norm clip 1.0; loss on the last token only. Data: random tokens 0..vocab-2, the
trigger (vocab-1) once at a uniform position p in [0, L-2) with the target at p+1, and again
as the last token. Evaluation: fresh sequences from a fixed seed, 32 per length, from a zero
state.

`--state-init carry | noise` adds the interventions of Buitrago Ruiz & Gu 2025 the same way
labbook's `[train] state_init` does: every layer's scan starts from the previous batch's final
state (rolled by one sequence, detached), or from Gaussian noise of std `--state-noise`.
mambapy's scans start from zero, so the script adds the initial state's contribution
exp(cumsum(delta) * A) * h0 to its parallel scan's states.
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F
from mambapy.mamba import MambaBlock, MambaConfig
from mambapy.pscan import pscan

from mambapy_bench import LM  # the same LM as the speed comparison (this script's folder)

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=10000)
p.add_argument("--seq-len", type=int, default=64)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--weight-decay", type=float, default=0.1)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--eval-lens", default="64,256,1024,4096")
p.add_argument("--eval-samples", type=int, default=32)
p.add_argument("--state-init", choices=["zeros", "noise", "carry"], default="zeros")
p.add_argument("--state-noise", type=float, default=1.0)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

VOCAB, TRIGGER = 16, 15
torch.manual_seed(a.seed)


class StateIo:
    """Initial states handed to each layer's scan, and the final states it leaves."""

    def __init__(self):
        self.initial = {}  # layer -> (B, ED, N)
        self.last = {}


STATE = StateIo()


def scan_from_state(self, x, delta, A, B, C, D):
    """mambapy's `selective_scan` started from `STATE.initial[self]` (shapes as there)."""
    delta_a = torch.exp(delta.unsqueeze(-1) * A)  # (B, L, ED, N)
    bx = delta.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)  # (B, L, ED, N)
    hs = pscan(delta_a, bx)
    h0 = STATE.initial.get(id(self))
    if h0 is not None:
        decay = torch.exp(torch.cumsum(delta, dim=1).unsqueeze(-1) * A)  # (B, L, ED, N)
        hs = hs + decay * h0.unsqueeze(1)
    STATE.last[id(self)] = hs[:, -1].detach()
    y = (hs @ C.unsqueeze(-1)).squeeze(3)
    return y + D * x


MambaBlock.selective_scan = scan_from_state


def batch(gen, n, length):
    x = torch.randint(0, VOCAB - 1, (n, length), generator=gen)
    pos = torch.randint(0, length - 2, (n,), generator=gen)
    rows = torch.arange(n)
    target = x[rows, pos + 1].clone()
    x[rows, pos] = TRIGGER
    x[:, -1] = TRIGGER
    return x, target


def lr_at(step):
    if a.warmup and step <= a.warmup:
        return a.lr * step / a.warmup
    progress = min(max((step - a.warmup) / max(a.steps - a.warmup, 1), 0.0), 1.0)
    low = a.lr * 0.1
    return low + 0.5 * (a.lr - low) * (1 + math.cos(math.pi * progress))


cfg = MambaConfig(d_model=64, n_layers=2, d_state=16, expand_factor=2, d_conv=4, pscan=True)
model = LM(cfg)
blocks = [layer.mixer for layer in model.mamba.layers]
no_decay = lambda name: (
    name.endswith("bias") or "A_log" in name or name.endswith(".D")
    or "norm" in name or name.startswith("embedding")
)
params = [
    {"params": [t for n, t in model.named_parameters() if not no_decay(n)], "weight_decay": a.weight_decay},
    {"params": [t for n, t in model.named_parameters() if no_decay(n)], "weight_decay": 0.0},
]
opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
gen = torch.Generator().manual_seed(a.seed)
noise_gen = torch.Generator().manual_seed(a.seed + 1)
started = time.time()
for step in range(1, a.steps + 1):
    x, target = batch(gen, a.batch, a.seq_len)
    for b in blocks:
        if a.state_init == "noise":
            shape = (a.batch, cfg.d_inner, cfg.d_state)
            STATE.initial[id(b)] = torch.randn(shape, generator=noise_gen) * a.state_noise
        elif a.state_init == "carry" and id(b) in STATE.last:
            STATE.initial[id(b)] = torch.roll(STATE.last[id(b)], -1, dims=0)
    logits = model(x)[:, -1]
    loss = F.cross_entropy(logits, target)
    for group in opt.param_groups:
        group["lr"] = lr_at(step)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % max(a.steps // 10, 1) == 0:
        print(f"step {step}/{a.steps} loss={loss.item():.4f}", flush=True)
train_s = time.time() - started

STATE.initial.clear()
result = {"impl": f"mambapy 1.2.0 / torch {torch.__version__}", "state_init": a.state_init,
          "weight_decay": a.weight_decay, "seed": a.seed,
          "steps": a.steps, "seq_len": a.seq_len, "train_s": round(train_s, 1)}
model.eval()
with torch.no_grad():
    for length in [int(v) for v in a.eval_lens.split(",")]:
        egen = torch.Generator().manual_seed(1_000_000 + length)
        correct, per = 0, max(1, min(a.eval_samples, 2**16 // length))
        for start in range(0, a.eval_samples, per):
            n = min(per, a.eval_samples - start)
            x, target = batch(egen, n, length)
            correct += (model(x)[:, -1].argmax(-1) == target).sum().item()
        result[f"acc@{length}"] = correct / a.eval_samples
print(json.dumps(result))

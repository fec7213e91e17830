"""Writes models/tests/data/scan_long.safetensors: the selective scan at L = 4,096 computed in
float64 by the public mambapy 1.2.0 (its sequential `selective_scan_seq`), with the gradients
of sum(y * r) by PyTorch autograd. Run by hand (needs torch, mambapy, safetensors; e.g. the
.venv-bench/ that scripts/induction-heads-vs-mambapy.sh installs):

    .venv-bench/bin/python scripts/golden_long_scan.py

The inputs are not stored: they come from a xorshift generator whose values are exact f32
numbers and are combined with f32 multiplications and additions only, so that the Rust test
(models/tests/scan_long.rs) rebuilds them bit for bit. They are chosen to reach the places
where a fast f32 scan can go wrong over a long sequence: decays exp(Δ·A) within 1e-9 of 1
(states that accumulate over thousands of steps), decays that underflow to 0 (Δ·A down to
about -600, past the exp polynomial's range and where a clamp must not turn into NaN), and
every magnitude in between.
"""
import types

import numpy as np
import torch
from mambapy.mamba import MambaBlock
from safetensors.numpy import save_file

BATCH, L, CH, N = 1, 4096, 8, 16
MASK = (1 << 64) - 1


def values(count, seed):
    """`count` numbers k / 2^24 in [0, 1), as the Rust test's `unit_values` makes them."""
    x = (seed * 0x9E3779B97F4A7C15 | 1) & MASK
    out = np.empty(count, dtype=np.float32)
    for i in range(count):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        out[i] = np.float32((x >> 40) / float(1 << 24))
    return out


f32 = np.float32
v = values(BATCH * L * CH, 1)
u = f32(2) * values(BATCH * L * CH, 2) - f32(1)
# Δ = 3·v⁶ spans 0 … 3 with most mass near 0 (v = 0.05 gives 5e-8); every 97th step is 30.
delta = f32(3) * v * v * v * v * v * v
delta.reshape(BATCH, L, CH)[:, ::97, :] = f32(30)
w = values(CH * N, 3)
a = -(f32(20) * w * w * w * w + f32(1e-3))  # A in [-20.001, -0.001]
b = f32(2) * values(BATCH * L * N, 4) - f32(1)
c = f32(2) * values(BATCH * L * N, 5) - f32(1)
d = f32(2) * values(CH, 6) - f32(1)
r = f32(2) * values(BATCH * L * CH, 7) - f32(1)

t = lambda arr, shape: torch.tensor(arr.astype(np.float64).reshape(shape), requires_grad=True)
U, DELTA = t(u, (BATCH, L, CH)), t(delta, (BATCH, L, CH))
A, B, C, D = t(a, (CH, N)), t(b, (BATCH, L, N)), t(c, (BATCH, L, N)), t(d, (CH,))
R = torch.tensor(r.astype(np.float64).reshape(BATCH, L, CH))
this = types.SimpleNamespace(config=types.SimpleNamespace(d_inner=CH, d_state=N))
y = MambaBlock.selective_scan_seq(this, U, DELTA, A, B, C, D)
assert y.dtype == torch.float64
(y * R).sum().backward()
out = {
    "y": y.detach().numpy(),
    "grad.u": U.grad.numpy(),
    "grad.delta": DELTA.grad.numpy(),
    "grad.a": A.grad.numpy(),
    "grad.b": B.grad.numpy(),
    "grad.c": C.grad.numpy(),
    "grad.d": D.grad.numpy(),
}
# f32 storage keeps the file under 1 MB; the reference's rounding (6e-8 relative) is far
# below the test's tolerance.
out = {k: np.ascontiguousarray(v.astype(np.float32)) for k, v in out.items()}
for k, val in out.items():
    assert np.isfinite(val).all(), k
decay = np.exp(delta.reshape(L, CH)[:, :, None].astype(np.float64) * a.reshape(CH, N))
print(f"decays: min {decay.min():.3g}, max {decay.max():.12f}, "
      f"share within 1e-6 of 1: {(decay > 1 - 1e-6).mean():.2%}, "
      f"share below 1e-30: {(decay < 1e-30).mean():.2%}")
save_file(out, "models/tests/data/scan_long.safetensors")
print("wrote models/tests/data/scan_long.safetensors")

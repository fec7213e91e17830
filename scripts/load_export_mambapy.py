"""Loads weights written by `labbook export-model` into PyTorch with mambapy and decodes.

The module below is laid out as mambapy's `LM` (embedding, mamba, norm_f, lm_head), so the
state dict loads with strict=True; it is written out here because `mambapy.lm` also imports
the CUDA-only `mamba_ssm`. Sizes are read from the tensors' shapes. Mamba-only models
(pattern of M's): mambapy has no attention layers.

    python scripts/load_export_mambapy.py model.safetensors --prompt "del" --tokens 60

prints the greedy continuation of a byte-level text run's prompt, which should be the same as
`labbook sample R-n --prompt "del" --tokens 60 --temperature 0` (checked for a text run on
2026-12-05; see docs/engine.md).
"""
import argparse

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from mambapy.mamba import Mamba, MambaConfig, RMSNorm


class LM(nn.Module):
    def __init__(self, cfg, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, cfg.d_model)
        self.mamba = Mamba(cfg)
        self.norm_f = RMSNorm(cfg.d_model, 1e-5)
        self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)

    def forward(self, ids):
        return self.lm_head(self.norm_f(self.mamba(self.embedding(ids))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--prompt", default="")
    ap.add_argument("--tokens", type=int, default=60)
    a = ap.parse_args()
    with safe_open(a.weights, "pt") as f:
        pattern = (f.metadata() or {}).get("pattern", "")
    if set(pattern) - {"M"}:
        raise SystemExit(f"pattern {pattern}: mambapy has no attention layers")
    sd = load_file(a.weights)
    vocab, d_model = sd["embedding.weight"].shape
    n_layers = len({k.split(".")[2] for k in sd if k.startswith("mamba.layers.")})
    d_inner, d_state = sd["mamba.layers.0.mixer.A_log"].shape
    cfg = MambaConfig(
        d_model=d_model,
        n_layers=n_layers,
        d_state=d_state,
        expand_factor=d_inner // d_model,
        d_conv=sd["mamba.layers.0.mixer.conv1d.weight"].shape[2],
        dt_rank=sd["mamba.layers.0.mixer.dt_proj.weight"].shape[1],
        pscan=False,
    )
    lm = LM(cfg, vocab)
    lm.load_state_dict(sd, strict=True)
    ids = list(a.prompt.encode()) or [0]
    start = len(ids)
    with torch.no_grad():
        for _ in range(a.tokens):
            ids.append(int(lm(torch.tensor([ids]))[0, -1].argmax()))
    print(bytes(ids[start:]).decode("utf-8", "replace"))


if __name__ == "__main__":
    main()

"""Random-score baseline (`--model Random`): how far above chance does a method stand under each metric?

The reconstruction is the input shifted by the same random amount on every channel:

    u ~ U(0, 1) i.i.d. per (window, time step), drawn from a generator seeded with `--seed`
    x_hat[b, t, c] = x[b, t, c] + sqrt(u[b, t])          for every channel c

so the per-point anomaly score mean_c (x_hat - x)^2 = u[b, t] is exactly uniform on [0, 1) and
independent of the data. With non-overlapping scoring windows (the default `--test_step` =
`--seq_len`) every test point gets one independent U(0, 1) score; with overlapping windows a
point's score is the mean of several independent uniforms (still uninformative, no longer uniform).
Nothing is learnt (`needs_training = False`); the same seed and call order give the same scores.
The same baseline without a model: `python -m utils.eval --random uniform`.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn


class Model(nn.Module):
    needs_training = False

    def __init__(self, args: Namespace):
        super().__init__()
        self.seed = int(getattr(args, "seed", 0))
        self.generator = torch.Generator(device="cpu").manual_seed(self.seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        u = torch.rand(B, L, 1, generator=self.generator, dtype=torch.float64)  # [B, L, 1]
        return x + torch.sqrt(u).to(device=x.device, dtype=x.dtype)  # [B, L, C] by broadcasting

    def describe(self) -> dict:
        return {"architecture": "random baseline: per-point score i.i.d. U(0,1), independent of the data",
                "seed": self.seed}

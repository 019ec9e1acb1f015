"""A small MLP autoencoder over the flattened window: the reference reconstruction baseline.

    x [B, L, C] -> flatten [B, L*C] -> Linear -> GELU -> Linear (bottleneck d_model/4)
                -> GELU -> Linear -> GELU -> Linear -> [B, L, C]

The bottleneck forces it to learn the normal patterns of a window, so
anomalous windows reconstruct badly. Deliberately simple: it is the yardstick
a heavier model must beat, and the model the pipeline tests run on.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        self.seq_len, self.channels = args.seq_len, args.enc_in
        d_in, hidden = args.seq_len * args.enc_in, args.d_model
        bottleneck = max(4, hidden // 4)
        self.encoder = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(args.dropout),
                                     nn.Linear(hidden, bottleneck))
        self.decoder = nn.Sequential(nn.GELU(), nn.Linear(bottleneck, hidden), nn.GELU(), nn.Linear(hidden, d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        z = self.encoder(x.reshape(B, -1))                   # [B, bottleneck]
        return self.decoder(z).reshape(B, self.seq_len, self.channels)

    def describe(self) -> dict:
        return {"architecture": "MLP autoencoder over the flattened window", "d_model": self.encoder[0].out_features}

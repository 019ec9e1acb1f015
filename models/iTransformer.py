"""iTransformer: each variate's whole lookback is one token; attention mixes variates.

Liu, Hu, Zhang, Wu, Wang, Ma & Long, "iTransformer: Inverted Transformers Are
Effective for Time Series Forecasting", ICLR 2024. Written here from the paper.
Forecasting only.

    x [B, L, C] ─ instance normalisation per window and variate (undone on the output)
      → per variate: Linear L→d (the variate token), dropout                      [B, C, d]
      → --e_layers Transformer encoder layers over the C tokens (self-attention
        with --n_heads, GELU feed-forward d→--d_ff→d, post-LayerNorm), final LN    [B, C, d]
      → Linear d→P per token, transposed, de-normalised                            [B, P, C]

No position embedding: the variates have no order (the paper). The encoder is
torch's ``nn.TransformerEncoderLayer`` (post-norm, GELU), which is the paper's
layer. Choices: the paper (and the Time-Series-Library) can add the time-feature
covariates as extra tokens; this framework feeds no time features, so the
tokens are the C variates only. Defaults: the Time-Series-Library's ETT setting
at lookback 96 (``models.MODEL_DEFAULTS``): d 128, d_ff 128, 2 layers, 8 heads.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn

from layers.patch import instance_norm
from models import model_option


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        if args.task_name != "long_term_forecast":
            raise ValueError("--model iTransformer is a forecaster; use it with --task_name long_term_forecast")
        d, n_heads = int(args.d_model), int(args.n_heads)
        d_ff = int(model_option(args, "iTransformer", "d_ff"))
        layers = int(model_option(args, "iTransformer", "e_layers"))
        if d % n_heads:
            raise ValueError(f"--d_model {d} must be divisible by --n_heads {n_heads}")
        self.embed = nn.Linear(int(args.seq_len), d)  # [B, C, L] -> [B, C, d]
        self.dropout = nn.Dropout(args.dropout)
        layer = nn.TransformerEncoderLayer(d, n_heads, d_ff, args.dropout, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Linear(d, int(args.pred_len))  # [B, C, d] -> [B, C, P]
        self.shape = {"d_model": d, "d_ff": d_ff, "e_layers": layers, "n_heads": n_heads}

    @staticmethod
    def setting_tags(args) -> list[str]:
        opt = lambda name: model_option(args, "iTransformer", name)  # noqa: E731
        return [f"dm{args.d_model}-df{opt('d_ff')}-el{opt('e_layers')}-nh{args.n_heads}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, mean, std = instance_norm(x)  # [B, L, C]
        h = self.encoder(self.dropout(self.embed(z.transpose(1, 2))))  # [B, C, d]
        return self.head(h).transpose(1, 2) * std + mean  # [B, P, C]

    def describe(self) -> dict:
        return {"architecture": "iTransformer (Liu et al., ICLR 2024): variates as tokens", **self.shape}

"""PatchTST: channel-independent patches as the tokens of a Transformer encoder, a flatten head.

Nie, Nguyen, Sinthong & Kalagnanam, "A Time Series is Worth 64 Words:
Long-term Forecasting with Transformers", ICLR 2023. Written here from the
paper (its supervised form). Forecasting only.

    x [B, L, C] ─ RevIN (per window and channel, no affine; undone on the output)
      → per channel [B·C, L] → N patches of --patch_len every --stride
        (end padded with --stride copies of the last value; layers/patch.py)       [B·C, N, p]
      → Linear p→d + learned position embedding [N, d], dropout                    [B·C, N, d]
      → --e_layers encoder layers: multi-head self-attention (--n_heads) and a
        GELU feed-forward d→--d_ff→d, each residual and followed by BatchNorm      [B·C, N, d]
      → flatten head: [N·d] → dropout → Linear N·d→P                               [B, C, P]
      → transposed, de-normalised                                                  [B, P, C]

Every channel shares all weights (channel independence). Defaults: the
Time-Series-Library's ETTh1 setting at lookback 96 (``models.MODEL_DEFAULTS``):
d 512, d_ff 2048, 1 layer, 2 heads, patches 16 every 8 (12 patches), dropout 0.1.
The paper uses BatchNorm in the encoder (better than LayerNorm for time series,
its appendix); kept here. Its optional learnable RevIN affine is not used.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import nn

from layers.patch import instance_norm, n_patches, patchify
from models import model_option


class BatchNormTokens(nn.Module):
    """BatchNorm1d over the feature axis of tokens [B, N, d]."""

    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer with BatchNorm: h = BN(h + MHA(h)); h = BN(h + FFN(h))."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.norm1, self.norm2 = BatchNormTokens(d), BatchNormTokens(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + self.drop(self.attn(h, h, h, need_weights=False)[0]))  # [B', N, d]
        return self.norm2(h + self.drop(self.ff(h)))


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        if args.task_name != "long_term_forecast":
            raise ValueError("--model PatchTST is a forecaster; use it with --task_name long_term_forecast")
        opt = lambda name: int(model_option(args, "PatchTST", name))  # noqa: E731
        self.patch_len, self.stride = opt("patch_len"), opt("stride")
        d, n_heads, d_ff, layers = int(args.d_model), int(args.n_heads), opt("d_ff"), opt("e_layers")
        if d % n_heads:
            raise ValueError(f"--d_model {d} must be divisible by --n_heads {n_heads}")
        n = n_patches(int(args.seq_len), self.patch_len, self.stride)
        self.embed = nn.Linear(self.patch_len, d)  # [.., p] -> [.., d]
        self.position = nn.Parameter(torch.empty(n, d).uniform_(-0.02, 0.02))  # [N, d]
        self.dropout = nn.Dropout(args.dropout)
        self.encoder = nn.Sequential(*[EncoderLayer(d, n_heads, d_ff, args.dropout) for _ in range(layers)])
        self.head = nn.Sequential(nn.Flatten(-2), nn.Dropout(args.dropout), nn.Linear(n * d, int(args.pred_len)))
        self.shape = {"patches": n, "d_model": d, "d_ff": d_ff, "e_layers": layers, "n_heads": n_heads}

    @staticmethod
    def setting_tags(args) -> list[str]:
        opt = lambda name: model_option(args, "PatchTST", name)  # noqa: E731
        return [f"dm{args.d_model}-df{opt('d_ff')}-el{opt('e_layers')}-nh{args.n_heads}-"
                f"p{opt('patch_len')}s{opt('stride')}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        z, mean, std = instance_norm(x)  # [B, L, C]
        p = patchify(z.transpose(1, 2), self.patch_len, self.stride)  # [B, C, N, p]
        h = self.dropout(self.embed(p.reshape(B * C, *p.shape[2:])) + self.position)  # [B*C, N, d]
        h = self.encoder(h)  # [B*C, N, d]
        out = self.head(h).reshape(B, C, -1)  # [B, C, P]
        return out.transpose(1, 2) * std + mean  # [B, P, C]

    def describe(self) -> dict:
        return {"architecture": "PatchTST (Nie et al., ICLR 2023): channel-independent patches, Transformer "
                                "encoder with BatchNorm, flatten head, RevIN", **self.shape,
                "patch_len": self.patch_len, "stride": self.stride}

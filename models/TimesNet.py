"""TimesNet: temporal 2D variation modelling, in its anomaly (reconstruction) form.

Wu, Hu, Liu, Zhou, Wang & Long, "TimesNet: Temporal 2D-Variation Modeling
for General Time Series Analysis", ICLR 2023. Written here from the paper.
Trained on the reconstruction MSE; the anomaly score of a point is its squared
reconstruction error averaged over channels (the shared loop's defaults: no
hooks).

    x [B, L, C] ─ instance normalisation per window and channel (undone on the output)
      → embedding: Conv1d(C→d, kernel 3, circular) + sinusoidal positions, dropout   [B, L, d]
      → TimesBlock × --e_layers, each followed by one shared LayerNorm               [B, L, d]
      → Linear d→C                                                                   [B, L, C]

    TimesBlock(h [B, T, d]):
      A = |rFFT_t(h)| averaged over channels (and the batch), DC excluded;
      f_1..f_k = top-k frequencies of A (k = --top_k), periods p_i = T // f_i
      for each p_i: zero-pad T to a multiple of p_i, fold to 2D [B, d, T/p_i, p_i],
        Inception(d→d_ff) → GELU → Inception(d_ff→d), unfold, crop to T            [B, T, d]
      out = h + Σ_i softmax_i(A_b[f_i]) · branch_i     (per-window amplitudes A_b)

    Inception(a→b): mean of --num_kernels Conv2d, kernel (2i+1)×(2i+1), 'same' padding.

Defaults (``None`` on run.py's flags means these, defined here once):
``--e_layers`` 2 (TSLib's anomaly scripts use 1-3), ``--top_k`` 5 and
``--num_kernels`` 6 (the paper's), the width ``d = --d_model`` (run.py's
common flag, default 128; TSLib's anomaly scripts use 8-128 depending on the
dataset) and ``--d_ff`` = ``d``.

Choices where the paper is silent: the periods are chosen once per batch from
the amplitudes averaged over the batch and channels (the paper averages over
channels; one fold per period for the whole batch keeps the 2D convolutions
batched), so a window's output depends slightly on its batch mates (the test
loader's order is fixed, so scores are reproducible); a frequency index is
never 0 (DC) and a period never exceeds T; the aggregation weights are the
per-window amplitudes of the chosen frequencies (differentiable). The
instance normalisation (window mean and standard deviation per channel,
undone after the head) is the Time-Series-Library's anomaly form.
"""
from __future__ import annotations

import math
from argparse import Namespace

import torch
from torch import nn
from torch.nn import functional as F

E_LAYERS, TOP_K, NUM_KERNELS = 2, 5, 6


def options(args: Namespace) -> dict:
    """The effective hyperparameters: a run.py flag when given, else this module's default."""
    d = args.d_model
    pick = lambda name, default: default if getattr(args, name, None) is None else getattr(args, name)  # noqa: E731
    return {"d_model": d, "d_ff": pick("d_ff", d), "e_layers": pick("e_layers", E_LAYERS),
            "top_k": pick("top_k", TOP_K), "num_kernels": pick("num_kernels", NUM_KERNELS)}


class Inception(nn.Module):
    """Mean of `num_kernels` 2D convolutions with kernels 1, 3, 5, ... (same padding): [B, a, H, W] -> [B, b, H, W]."""

    def __init__(self, c_in: int, c_out: int, num_kernels: int):
        super().__init__()
        self.kernels = nn.ModuleList(nn.Conv2d(c_in, c_out, kernel_size=2 * i + 1, padding=i)
                                     for i in range(num_kernels))
        for conv in self.kernels:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([conv(x) for conv in self.kernels], dim=-1).mean(-1)


def top_periods(h: torch.Tensor, k: int) -> tuple[list[int], torch.Tensor]:
    """The k dominant periods of `h` [B, T, d] and each window's amplitude at them [B, k]."""
    T = h.shape[1]
    amp = torch.fft.rfft(h, dim=1).abs().mean(-1)  # [B, T//2+1], mean over channels
    k = max(1, min(k, amp.shape[1] - 1))  # frequencies 1..T//2 are candidates
    with torch.no_grad():
        overall = amp.mean(0)  # [T//2+1], mean over the batch
        overall[0] = 0  # never the DC component
        freqs = torch.topk(overall, k).indices  # [k]
    periods = [max(1, T // int(f)) if int(f) > 0 else T for f in freqs]
    return periods, amp[:, freqs]  # [B, k]


class TimesBlock(nn.Module):
    def __init__(self, d_model: int, d_ff: int, top_k: int, num_kernels: int):
        super().__init__()
        self.k = top_k
        self.conv = nn.Sequential(Inception(d_model, d_ff, num_kernels), nn.GELU(),
                                  Inception(d_ff, d_model, num_kernels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, d = h.shape
        periods, weights = top_periods(h, self.k)  # k periods, [B, k]
        branches = []
        for p in periods:
            length = math.ceil(T / p) * p
            x = F.pad(h, (0, 0, 0, length - T))  # [B, length, d], zeros at the end
            x = x.reshape(B, length // p, p, d).permute(0, 3, 1, 2)  # [B, d, length/p, p]: rows = cycles
            x = self.conv(x)  # [B, d, length/p, p]
            branches.append(x.permute(0, 2, 3, 1).reshape(B, length, d)[:, :T])  # [B, T, d]
        stacked = torch.stack(branches, dim=-1)  # [B, T, d, k]
        w = torch.softmax(weights, dim=1)[:, None, None, :]  # [B, 1, 1, k]
        return h + (stacked * w).sum(-1)  # [B, T, d]


class Embedding(nn.Module):
    """Value embedding (Conv1d C→d, kernel 3, circular padding) + fixed sinusoidal positions, dropout."""

    def __init__(self, c_in: int, d_model: int, dropout: float, max_len: int = 5000):
        super().__init__()
        self.value = nn.Conv1d(c_in, d_model, kernel_size=3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.value.weight, mode="fan_in", nonlinearity="leaky_relu")
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div[: d_model // 2])
        self.register_buffer("pe", pe, persistent=False)  # [max_len, d], recomputed, not checkpointed
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.value(x.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        return self.dropout(v + self.pe[: x.shape[1]])


class Model(nn.Module):
    def __init__(self, args: Namespace):
        super().__init__()
        self.opts = o = options(args)
        self.embedding = Embedding(args.enc_in, o["d_model"], args.dropout, max_len=max(5000, args.seq_len))
        self.blocks = nn.ModuleList(TimesBlock(o["d_model"], o["d_ff"], o["top_k"], o["num_kernels"])
                                    for _ in range(o["e_layers"]))
        self.norm = nn.LayerNorm(o["d_model"])
        self.head = nn.Linear(o["d_model"], args.enc_in)

    @staticmethod
    def setting_tags(args) -> list[str]:
        o = options(args)
        return [f"dm{o['d_model']}", f"df{o['d_ff']}", f"el{o['e_layers']}", f"k{o['top_k']}",
                f"nk{o['num_kernels']}"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True).detach()  # [B, 1, C]
        std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5).detach()  # [B, 1, C]
        h = self.embedding((x - mean) / std)  # [B, L, d]
        for block in self.blocks:
            h = self.norm(block(h))  # [B, L, d]
        return self.head(h) * std + mean  # [B, L, C]

    def describe(self) -> dict:
        return {"architecture": "TimesNet (Wu et al., ICLR 2023): FFT periods, 2D Inception convolutions",
                **self.opts}

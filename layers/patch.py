"""Patching of channel-independent series, shared by PatchTST and GPT4TS's forecasting form.

Nie, Nguyen, Sinthong & Kalagnanam, "A Time Series is Worth 64 Words: Long-term
Forecasting with Transformers", ICLR 2023: each channel's lookback is cut into
overlapping patches of ``patch_len`` steps every ``stride`` steps, after padding the
end with ``stride`` copies of the last value (so the last steps always fall in a patch):
``N = (L - patch_len) // stride + 2`` patches.
"""
from __future__ import annotations

import torch


def n_patches(seq_len: int, patch_len: int, stride: int) -> int:
    """Patches of a lookback of `seq_len` steps; a clear error when `patch_len` does not fit."""
    if patch_len < 1 or stride < 1:
        raise ValueError(f"--patch_len and --stride must be >= 1, got {patch_len} and {stride}")
    if patch_len > seq_len + stride:
        raise ValueError(f"--patch_len {patch_len} is longer than the padded lookback (--seq_len {seq_len} + "
                         f"--stride {stride}); lower --patch_len or raise --seq_len")
    return (seq_len + stride - patch_len) // stride + 1


def patchify(x: torch.Tensor, patch_len: int, stride: int) -> torch.Tensor:
    """`x` [B, C, L] -> patches [B, C, N, patch_len], the end padded by repeating the last value `stride` times."""
    padded = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], stride)], dim=-1)  # [B, C, L + stride]
    return padded.unfold(-1, patch_len, stride)  # [B, C, N, patch_len]


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RevIN without affine parameters (Kim et al., ICLR 2022): `x` [B, L, C] standardised per window and
    channel over time; returns (normalised x, mean [B, 1, C], std [B, 1, C]) to undo it on the forecast."""
    mean = x.mean(1, keepdim=True).detach()
    std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + eps).detach()
    return (x - mean) / std, mean, std

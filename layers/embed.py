"""Token embeddings of CrossAlign: time steps as tokens (anomaly form), variates as tokens (forecasting form)."""
from __future__ import annotations

import torch
import torch.nn as nn

from layers.fast_ops import Dropout, Linear

__all__ = ["TimeEmbedding", "VariateEmbedding"]


class TimeEmbedding(nn.Module):
    """Each time step's C values -> one d-dimensional token, plus a trainable position embedding.

    ``forward(x [B, L, C]) -> [B, L, d]``. Positions are learnt for up to
    ``max_len`` steps (the window length); a shorter window uses the first
    ones, a longer one is an error naming ``--seq_len``.
    """

    def __init__(self, c_in: int, d_model: int, max_len: int, dropout: float = 0.1) -> None:
        super().__init__()
        if c_in < 1 or max_len < 1:
            raise ValueError(f"TimeEmbedding needs c_in >= 1 and max_len >= 1, got {c_in}, {max_len}")
        self.value = Linear(c_in, d_model)  # few inputs: see layers.fast_ops.linear
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)  # [L, d], GPT-2's init scale
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > self.position.shape[0]:
            raise ValueError(f"window of {length} steps is longer than the model's --seq_len "
                             f"{self.position.shape[0]}; rebuild the model with a larger --seq_len")
        return self.dropout(self.value(x) + self.position[:length])


class VariateEmbedding(nn.Module):
    """Each variate's whole lookback ``[L]`` -> one d-dimensional token (iTransformer, Liu et al., ICLR 2024).

    ``forward(x [B, L, C]) -> [B, C, d]``. No position embedding: variates have no order.
    """

    def __init__(self, seq_len: int, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.value = nn.Linear(seq_len, d_model)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.value.in_features:
            raise ValueError(f"lookback of {x.shape[1]} steps, but the model was built for "
                             f"--seq_len {self.value.in_features}")
        return self.dropout(self.value(x.transpose(1, 2)))  # [B, C, L] -> [B, C, d]

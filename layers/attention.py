"""Multi-head attention, the one attention module of CrossAlign (README, The model).

Used for time self-attention (``models/CrossAlign.py``), memory retrieval
(``layers/pmd.py``) and cross-alignment (``layers/cross_alignment.py``).
``MultiHeadAttention`` (Vaswani et al., 2017) runs PyTorch's
``scaled_dot_product_attention`` (``layers.fast_ops.attention``: the same
maths, trained faster on CPU), and accepts keys/values shared by the whole
batch (``[S, d]``, the principal memory): those are projected once per call
instead of once per sample.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from layers.fast_ops import attention, attention_backend

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """``forward(x [B, T, d], kv [B, S, d] or [S, d]) -> [B, T, d]``: ``softmax(QK^T/sqrt(d_h)) V W_o`` per head.

    ``Q = x W_q``, ``K = kv W_k``, ``V = kv W_v`` (``q``, ``k``, ``v``, ``o``
    are the projections). Unbatched ``kv [S, d]`` is shared by every sample:
    K and V are computed once and the batch is folded into the query axis
    (attention rows are independent, so this is exact). ``backend_used`` says which attention ran last
    (``layers.fast_ops.attention_backend``; metrics.json lists it).
    """

    backend_used: str | None = None

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"--n_heads {n_heads} must divide the width {d_model}")
        self.n_heads, self.dropout = n_heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h, dh = self.n_heads, d // self.n_heads
        p = self.dropout if self.training else 0.0
        if kv.dim() == 2:  # shared keys/values [S, d]
            q = self.q(x).reshape(1, b * t, h, dh).transpose(1, 2)  # [1, h, B*T, dh]
            k = self.k(kv).reshape(1, -1, h, dh).transpose(1, 2)  # [1, h, S, dh]
            v = self.v(kv).reshape(1, -1, h, dh).transpose(1, 2)
        else:
            q = self.q(x).reshape(b, t, h, dh).transpose(1, 2)  # [B, h, T, dh]
            k = self.k(kv).reshape(b, -1, h, dh).transpose(1, 2)  # [B, h, S, dh]
            v = self.v(kv).reshape(b, -1, h, dh).transpose(1, 2)
        self.backend_used = attention_backend(q, k, v, dropout_p=p)
        a = attention(q, k, v, dropout_p=p)  # [*, h, *, dh]
        return self.o(a.transpose(1, 2).reshape(b, t, d))

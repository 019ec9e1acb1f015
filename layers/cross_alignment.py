"""The frequency branch (Mamba then a real FFT) and the cross-alignment module of CrossAlign.

Frequency branch: ``Linear C -> d_s``, ``MambaStack`` (Gu & Dao 2023) over
time, ``Linear d_s -> d_s``, a real FFT over the time axis, real and
imaginary parts concatenated and projected ``2 d_s -> d``: ``L // 2 + 1``
frequency tokens. The FFT uses ``norm="ortho"`` so token magnitudes do not
grow with the window length (the paper does not say; this keeps any L on one
scale). With ``fft=False`` (ablation) the Mamba output stays in time and is
projected ``d_s -> d``: ``L`` time tokens.

Cross-alignment: multi-head attention with queries from the semantic (LLM)
tokens ``s`` and keys/values from the frequency tokens ``f``; the output
projection is ``W_m``; then ``LayerNorm(s + a)`` and a linear head.

The attention is ``layers.attention.MultiHeadAttention``, the one attention
module of the model.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from layers.attention import MultiHeadAttention
from layers.fast_ops import Linear
from layers.mamba import MambaStack

__all__ = ["FrequencyBranch", "CrossAlignment"]


class FrequencyBranch(nn.Module):
    """``forward(x [B, L, C]) -> f [B, L // 2 + 1, d]`` (``[B, L, d]`` with ``fft=False``)."""

    def __init__(self, c_in: int, d_model: int, d_ssm: int = 128, n_layers: int = 2, d_state: int = 16,
                 d_conv: int = 4, expand: int = 2, fft: bool = True, backend: str = "auto") -> None:
        super().__init__()
        self.fft = fft
        self.inp = Linear(c_in, d_ssm)  # few inputs: see layers.fast_ops.linear
        self.ssm = MambaStack(d_ssm, n_layers, d_state, d_conv, expand, backend)
        self.mix = nn.Linear(d_ssm, d_ssm)
        self.out = nn.Linear(2 * d_ssm if fft else d_ssm, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.ssm(self.inp(x)))  # [B, L, d_s]
        if not self.fft:
            return self.out(y)  # [B, L, d]
        # the FFT runs in float32: CPU rfft has no bf16 kernel and autocast must not pick one
        with torch.autocast(device_type=y.device.type, enabled=False):
            spec = torch.fft.rfft(y.float(), dim=1, norm="ortho")  # [B, L//2+1, d_s] complex
            feats = torch.cat([spec.real, spec.imag], dim=-1)  # [B, F, 2 d_s]
        return self.out(feats)  # [B, F, d]


class CrossAlignment(nn.Module):
    """``forward(s [B, T, d], f [B, F, d] or None) -> [B, T, c_out]``.

    ``a = softmax((s W_q)(f W_k)^T / sqrt(d_h)) (f W_v) W_m`` per head;
    output ``Linear_{d -> c_out}(LayerNorm(s + a))``. ``f=None`` (no
    frequency branch, ``with_frequency=False``) has no attention: ``Linear(LayerNorm(s))``.
    """

    def __init__(self, d_model: int, c_out: int, n_heads: int = 8, dropout: float = 0.1,
                 with_frequency: bool = True) -> None:
        super().__init__()
        # W_q, W_k, W_v are attn.q/k/v; W_m is attn.o
        self.attn = MultiHeadAttention(d_model, n_heads, dropout) if with_frequency else None
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, c_out)

    def forward(self, s: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
        if (f is None) != (self.attn is None):
            raise ValueError("CrossAlignment: pass frequency tokens iff it was built with_frequency=True")
        if f is not None:
            a = self.attn(s, f)  # [B, T, d]
            s = s + a
        return self.head(self.norm(s))

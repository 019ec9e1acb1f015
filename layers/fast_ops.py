"""Dropout and attention that train faster on CPU, with the same maths as PyTorch's.

Why (measured numbers: README, The model > Speed; ``python -m scripts.bench model``
shows the effect on a whole step):

- ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which on
  CPU costs more than the GEMM that follows a LoRA dropout. ``dropout`` here
  draws 16 random bits per element from the same generator
  (``torch.manual_seed`` still makes runs reproducible) by viewing a 64-bit
  ``random_()`` as four 16-bit integers, about three times cheaper.
  The drop probability is ``p`` rounded to a multiple of 2^-15 (0.1 ->
  0.100006) and the kept values are scaled by the exact inverse of the
  keep probability, so the output stays unbiased.
- With dropout on, ``scaled_dot_product_attention`` on CPU falls back to
  its unfused path with ``bernoulli_`` on the attention weights, and in bf16
  its fused kernel's backward is slow for short sequences. ``attention``
  runs the same computation (``softmax(QK^T * scale + mask) V``, softmax in
  fp32) with ``dropout`` above whenever gradients are needed on CPU with
  dropout or in bf16. Without gradients, and on other devices, it *is*
  ``scaled_dot_product_attention``.

``install(model)`` puts both into a transformers model: every ``nn.Dropout``
becomes ``Dropout`` (peft's LoRA dropouts ``LoraDropout``) and the attention of
families that look it up in transformers' attention registry (GPT-2, Llama)
becomes ``attention``.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["dropout", "Dropout", "LoraDropout", "attention", "install", "ATTENTION_NAME"]

ATTENTION_NAME = "crossalign_sdpa"  # the name registered in transformers' AttentionInterface
_BITS = 15  # random bits per element used for the keep/drop decision


def _drop_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A bool mask (True = dropped, probability ~ ``p``) and the scale that keeps the output unbiased."""
    n = math.prod(shape)
    # one 64-bit draw gives four 16-bit values; the top one of each has only 15 random bits
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_().view(torch.int16)[:n]
    threshold = round(p * (1 << _BITS))
    dropped = (bits & ((1 << _BITS) - 1)).lt(threshold).view(shape)
    return dropped, (1 << _BITS) / ((1 << _BITS) - threshold)


class _MaskedScale(torch.autograd.Function):
    """``y = x * keep * scale``; the backward applies the same mask and scale to the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        dropped, scale = _drop_mask(x.shape, p, x.device)
        ctx.save_for_backward(dropped)
        ctx.scale = scale
        return x.masked_fill(dropped, 0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (dropped,) = ctx.saved_tensors
        return grad.masked_fill(dropped, 0).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout: ``F.dropout(x, p, training)`` with a cheaper mask on CPU (see the module docstring).

    ``p`` in ``[0, 1]``; ``p == 0`` or ``training=False`` returns ``x`` itself,
    ``p == 1`` zeros. Non-CPU tensors use ``F.dropout`` (CUDA's mask is already cheap).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0 < round(p * (1 << _BITS)) < (1 << _BITS):
        return F.dropout(x, p, True)  # p within 2^-16 of 0 or 1: too fine for 15-bit draws
    return _MaskedScale.apply(x, p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`dropout`'s cheaper CPU mask (``p`` and ``training`` behave the same)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class LoraDropout(Dropout):
    """LoRA's input dropout: under CPU autocast it first casts to the autocast dtype.

    Its output only feeds ``lora_A``'s matmul, which autocast would cast anyway;
    dropping the already-cast tensor saves a copy and a slower fp32 mask pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))
        return dropout(x, self.p, self.training)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)``,
    faster to train on CPU.

    Shapes as SDPA: ``q [..., H, T, E]``, ``k [..., Hk, S, E]``, ``v [..., Hk, S, Ev]`` -> ``[..., H, T, Ev]``
    (``Hk`` divides ``H`` with ``enable_gqa``, else equal); ``attn_mask`` boolean (True = attend)
    or additive, broadcastable to ``[..., H, T, S]``.
    """
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if q.device.type != "cpu" or not grad or (dropout_p == 0.0 and q.dtype == torch.float32):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    if enable_gqa and k.shape[-3] != q.shape[-3]:  # grouped key/value heads: each serves H / Hk query heads
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)).float().mul_(scale)  # [..., T, S], fp32 for the softmax
    # in place: scores is a fresh tensor and the softmax backward needs only its output
    if is_causal:
        t, s = scores.shape[-2:]
        scores.masked_fill_(torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    if attn_mask is not None:
        in_place = torch.broadcast_shapes(scores.shape, attn_mask.shape) == scores.shape
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill_(~attn_mask, float("-inf")) if in_place \
                else scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores.add_(attn_mask) if in_place else scores + attn_mask
    weights = dropout(torch.softmax(scores, dim=-1).to(v.dtype), dropout_p)  # [..., T, S]
    return torch.matmul(weights, v)


def _transformers_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``[B, H, T, E]`` in, ``([B, T, H, E], None)`` out.

    Same decisions as transformers' own SDPA function (grouped key/value heads,
    causal when the module is and no mask is given).
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :, :key.shape[-2]]
    if is_causal is None:
        is_causal = query.shape[2] > 1 and attention_mask is None and getattr(module, "is_causal", True)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    out = attention(query, key, value, attention_mask, dropout, bool(is_causal), scaling, gqa)  # [B, H, T, E]
    return out.transpose(1, 2).contiguous(), None


def install(model: nn.Module) -> nn.Module:
    """Use :class:`Dropout` and :func:`attention` inside a transformers model (in place; returns it).

    Every plain ``nn.Dropout`` submodule is replaced by ``Dropout`` with the same
    ``p``; a model whose config uses the SDPA attention is switched to the same
    computation registered as ``ATTENTION_NAME``. Families that do not look
    attention up in transformers' registry (BERT) keep their own attention.
    """
    for parent in list(model.modules()):
        lora = isinstance(getattr(parent, "lora_dropout", None), nn.ModuleDict)  # a peft LoRA layer
        if lora:
            parent.cast_input_dtype_enabled = False  # peft would cast LoRA's input to fp32 under autocast
            parent = parent.lora_dropout
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, (LoraDropout if lora else Dropout)(child.p))
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        from transformers import AttentionInterface
        AttentionInterface.register(ATTENTION_NAME, _transformers_attention)
        config._attn_implementation = ATTENTION_NAME
    return model

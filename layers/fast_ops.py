"""Dropout, attention, the LoRA update, GELU and narrow Linears, trained faster on CPU with the same maths as
PyTorch's and peft's.

Why (measured numbers: README, The model > Speed; ``python -m scripts.bench model``
shows the effect on a whole step):

- ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which on
  CPU costs more than the GEMM that follows a LoRA dropout. ``dropout`` here
  uses 15 random bits per element from Philox4x32-10 (Salmon et al., SC
  2011; cuRAND's generator), keyed by a seed drawn from torch's generator (so
  ``torch.manual_seed`` still makes runs reproducible). The drop probability
  is ``p`` rounded to a multiple of 2^-15 (0.1 -> 0.100006) and the kept
  values are scaled by the exact inverse of the keep probability, so the
  output stays unbiased. On the CPU, for float32 and bfloat16, the C kernel
  ``csrc/dropout.c`` (built on first use by ``layers.ckernel``) draws the
  bits, applies them and stores one flag byte per element for the backward
  in one pass; PyTorch's route (bits, mask tensor, multiply) makes about six
  passes over the data and keeps a float32 mask. Without a compiler (or for
  float64) numpy computes the same bits (``_philox_draws``), and the mask
  is a 0/1 integer tensor built
  with integer arithmetic and applied by a multiply: on CPU, boolean tensors
  and ``masked_fill`` run unvectorised loops (a bf16 ``masked_fill`` of 9.8M
  elements takes 35 ms, the multiply 7 ms); in fp32 the mask holds 0 or the
  scale, so forward and backward are one multiply.
- With dropout on, ``scaled_dot_product_attention`` on CPU falls back to
  its unfused path with ``bernoulli_`` on the attention weights, and in bf16
  its fused kernel's backward is slow for short sequences. ``attention``
  runs the same computation, ``softmax(scale * QK^T + mask) V``, with
  ``dropout`` above whenever gradients are needed on CPU with dropout or in
  bf16: the scale is one ``baddbmm``'s ``alpha`` and the mask (the causal
  one cached per shape, in the compute dtype) its addend, so the scores
  take no pass of their own, and the softmax reads that product
  directly (a bf16 softmax accumulates in fp32 internally), which halves the
  time of the old matmul, cast, scale, ``masked_fill`` and cast-back chain.
  Without gradients, and on other devices, it *is*
  ``scaled_dot_product_attention``.

- peft's LoRA ``Linear`` computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling``.
  In float32 on the CPU, ``lora_forward`` runs it as :class:`_LoraLinear`: the C kernel
  ``csrc/lora.c`` computes the rank-r products, forward and backward, four rows at a time with the
  ``r x n`` side in cache, and draws the dropout inside the first one (the same mask as
  ``dropout`` for the same seed), keeping one flag byte per element instead of ``dropout(x)``.
  The output starts as ``bias + scaling a B^T`` (the kernel) and the base product adds ``x W^T``
  into it (``addmm_``, beta 1), where ``F.linear`` then ``addmm_`` copied the bias into it and read
  and wrote it once more: forward 1.01-1.14x at the models' shapes (one core, one process).
  MKL runs these products, with one side of ``r = 8`` columns, at 12-28 GFLOP/s on an AVX2 core,
  where the layer's own ``[M, in] x [in, out]`` product runs at 60-70; and the dropout, the
  adapter's sum into the output and its gradient's sum into ``x``'s are passes of their own.
  The work besides the base product, forward + backward of one LoRA ``Linear`` at ``M = 3200``
  (torch.profiler self times, one core of an AMD EPYC, medians of 3): MiniLM's ``384 -> 384`` 7.6 ->
  5.6 ms, ``384 -> 1536`` 18.0 -> 11.9, ``1536 -> 384`` 23.8 -> 17.9; GPT-2's ``768 -> 2304`` 27.7 ->
  19.2, ``768 -> 3072`` 35.3 -> 23.7, ``3072 -> 768`` 46.3 -> 34.6. Elsewhere (bf16 autocast, other
  dtypes or devices, no compiler) the low-rank product is added into the base output with one
  ``addmm(base(x), a, B^T, alpha=scaling)``: the same sum, one pass. Its ``B^T`` is a contiguous
  ``[r, out]`` copy, so that ``B``'s gradient is ``a^T g`` (``[r, M] @ [M, out]``); ``nn.Linear``'s
  backward (peft's path) computes it as ``g^T a`` (``[out, M] @ [M, r]``), which MKL runs 5-13x
  slower. Forward and backward of one LoRA ``Linear``'s adapter part at ``M = 3200``, ``r = 8``,
  fp32, one core of an AMD EPYC (AVX2): 145 -> 26 ms for ``out = 3072``, 86 -> 20 ms for 2304,
  22 -> 7 ms for 768.

- GELU's tanh form (GPT-2's activation), ``0.5 x (1 + tanh(u))``: PyTorch's
  CPU kernel computes the ``tanh``, which runs at about 4 ns per element on an
  AVX2 core (41-70 ms forward for ``[3200, 3072]``, against 15 ms for the erf
  form). ``gelu_tanh`` computes the same function as ``x sigmoid(2u)`` with a
  vectorised ``exp`` (``csrc/gelu.c``), and in training its derivative in
  the same pass, kept instead of ``x``, so the backward is one multiply;
  float32 and bfloat16 on the CPU; elsewhere, and without a compiler, it is
  ``F.gelu(x, approximate="tanh")``. Not bit-identical: within 5.2e-7
  absolute of the float64 function forward (PyTorch's float32: 4.3e-7) and
  2e-6 backward (PyTorch: 1e-6), on ``[-12, 12]``. A bf16 tensor (what the
  MLP's first product gives under ``--bf16 1``'s autocast) is read and
  written in bf16 and computed in float32, as PyTorch's bf16 GELU: the output
  within one bf16 rounding of the function, the gradient within two (the
  derivative is kept in bf16, as PyTorch keeps ``x``); forward + backward of
  a bf16 ``[3200, 3072]`` 85 -> 33 ms on one AVX2 core (``python -m
  scripts.bench gelu``).
- GELU's erf form (BERT's and MiniLM's activation), ``x Phi(x)``: PyTorch's
  CPU forward is fast, but its backward computes ``erf`` and ``exp`` again
  from ``x``. ``gelu_erf`` computes ``Phi`` by the erfc formula PyTorch's
  vectorised ``erf`` uses (Abramowitz and Stegun 7.1.26), and in training the
  derivative ``Phi(x) + x phi(x)`` in the same pass (its ``exp`` is the
  formula's), kept instead of ``x``: forward + backward of ``[3200, 1536]``
  11.6 -> 7.3 ms on one AVX2 core. Within 4.2e-7 of the float64 function
  forward (PyTorch's float32: 3.7e-7) and 2.6e-7 for the derivative
  (PyTorch: 2.6e-7), on ``[-20, 20]``; bfloat16 as the tanh form's; elsewhere
  ``F.gelu(x)``.

- A ``Linear`` with few inputs (a window's C channels into the model width, Mamba's
  ``dt_proj`` from its rank R = d / 16): its backward's products have a side of
  ``in`` columns, ``grad_w = g^T x`` (``[out, M] @ [M, in]``) and ``grad_x = g W``
  (``[M, out] @ [out, in]``), which MKL runs 3-9x slower on an AVX2 core than the
  same products taken transposed, ``(x^T g)^T`` and ``(W^T g^T)^T`` (at ``in = 8``,
  ``M = 3200``: ``g^T x`` 2.45 ms against 0.27 for ``out = 256``; at ``in = 38``
  1.5-1.9x; none slower beyond 0.9x up to ``in = 64``). :class:`Linear` (an
  ``nn.Linear``) and :func:`linear` take them transposed for ``in < 64`` in float32
  on the CPU outside autocast; the same sums, in another order of rounding.

``install(model)`` puts these into a transformers model: every ``nn.Dropout``
becomes ``Dropout`` (peft's LoRA dropouts ``LoraDropout``), every peft LoRA
``Linear`` runs ``lora_forward``, every GELU module becomes ``TanhGELU`` or
``ErfGELU``, and the attention of families that look it up in transformers'
attention registry (GPT-2, BERT, Llama) becomes ``attention``.
"""
from __future__ import annotations

import ctypes
import math
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from layers.ckernel import (CSRC, CKernel, largest_relative_difference, outputs_and_gradients, raise_if_failed,
                            threads_for)

__all__ = ["dropout", "Dropout", "LoraDropout", "backend", "kernel_error", "gelu_tanh", "TanhGELU", "gelu_erf",
           "ErfGELU", "gelu_backend", "gelu_kernel_error", "attention", "attention_backend", "attention_kernel_error",
           "lora_forward", "lora_kernel_error", "Linear", "linear", "install", "ATTENTION_NAME"]

ATTENTION_NAME = "crossalign_sdpa"  # the name registered in transformers' AttentionInterface
_BITS = 15  # random bits per element used for the keep/drop decision


def _threshold_and_scale(p: float) -> tuple[int, float]:
    """Drop iff a 15-bit draw is below ``threshold = round(p 2^15)``; kept values times ``scale`` (unbiased)."""
    threshold = round(p * (1 << _BITS))
    return threshold, (1 << _BITS) / ((1 << _BITS) - threshold)


def _draw_seed() -> int:
    return int(torch.randint(1 << 62, ()).item())  # torch's generator decides: manual_seed reproduces the mask


def _philox4x32_10(blocks: np.ndarray, seed: int) -> np.ndarray:
    """The four 32-bit words ``[4, n]`` (in uint64) of the Philox4x32-10 blocks (Salmon et al., SC 2011) numbered
    ``blocks`` (uint64): counter ``(b mod 2^32, b / 2^32, 0, 0)``, key ``(seed mod 2^32, seed / 2^32)``
    (``csrc/philox.h``)."""
    low, shift = np.uint64(0xFFFFFFFF), np.uint64(32)
    x0, x1 = blocks & low, blocks >> shift
    x2 = x3 = np.zeros_like(blocks)
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * x0, np.uint64(0xCD9E8D57) * x2  # 32 x 32 bits: exact in 64
        x0, x1, x2, x3 = ((p1 >> shift) ^ x1 ^ np.uint64(k0), p1 & low,
                          (p0 >> shift) ^ x3 ^ np.uint64(k1), p0 & low)
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF  # Weyl key increments
    return np.stack([x0, x1, x2, x3])


_PHILOX_LANES = 8  # csrc/philox.h's PHILOX_LANES: a group of elements is 8 blocks x 4 words x 2 halves


def _philox_draws(n: int, seed: int) -> np.ndarray:
    """The 15-bit draws (int16) of elements ``0 .. n-1``, ``csrc/philox.h``'s stream: element
    ``64 g + 8 (2 w + h) + l`` takes the low 15 bits of the 16-bit half ``h`` of word ``w`` of block ``8 g + l``."""
    groups = -(-n // (8 * _PHILOX_LANES))
    words = _philox4x32_10(np.arange(groups * _PHILOX_LANES, dtype=np.uint64), seed)  # [word, block]
    words = words.reshape(4, groups, _PHILOX_LANES).transpose(1, 0, 2)  # [group, word, lane]
    halves = np.stack([words & np.uint64(0x7FFF), (words >> np.uint64(16)) & np.uint64(0x7FFF)], axis=2)
    return halves.reshape(-1)[:n].astype(np.int16)  # [group, word, half, lane]: element order


def _keep_mask(shape: torch.Size, p: float, device: torch.device, seed: int) -> torch.Tensor:
    """An int16 0/1 mask (1 = kept, probability ~ ``1 - p``) from the Philox4x32-10 draws keyed by ``seed``
    (``_philox_draws``): the kernel's mask."""
    bits = torch.from_numpy(_philox_draws(math.prod(shape), seed)).to(device)
    threshold, _ = _threshold_and_scale(p)
    # kept iff bits >= threshold; integer arithmetic, because bool tensors take unvectorised CPU loops
    return bits.sub_(threshold - 1).clamp_(0, 1).view(shape)


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr, f32, threads = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    for name in ("dropout_f32", "dropout_bf16"):
        getattr(lib, name).argtypes = [i64, ctypes.c_uint64, ctypes.c_int32, f32, ptr, ptr, ptr, threads]
    for name in ("masked_scale_f32", "masked_scale_bf16"):
        getattr(lib, name).argtypes = [i64, ptr, f32, ptr, ptr, threads]


KERNEL = CKernel(CSRC / "dropout.c", _declare)
_KERNEL_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}


def kernel_error() -> str | None:
    """None when the C dropout kernel is built and draws, applies and reverses exactly the masks of the
    numpy path (float32 and bfloat16, a length that ends inside a block, checked once per process); else why not."""
    return KERNEL.checked_error(_compare_kernel_with_numpy)


def _compare_kernel_with_numpy() -> str | None:
    g = torch.Generator().manual_seed(0)
    for dtype in _KERNEL_DTYPES:
        x = torch.randn(3, 1031, generator=g).to(dtype)  # 3093 elements: several chunks, a partial last block
        grad = torch.randn(3, 1031, generator=g).to(dtype)
        y_k, g_k = outputs_and_gradients(lambda t: _KeepScale.apply(t, 0.3, 12345, True), [x], grad)
        y_n, g_n = outputs_and_gradients(lambda t: _KeepScale.apply(t, 0.3, 12345, False), [x], grad)
        if not (torch.equal(y_k, y_n) and torch.equal(g_k, g_n)):
            return f"it disagrees with the numpy Philox path in {dtype}"
    return None


class _KeepScale(torch.autograd.Function):
    """``y = x * keep * scale``; the backward applies the same mask and scale to the gradient.

    With the kernel (float32 and bfloat16 on the CPU): one pass each way, the mask kept as one byte per
    element. Otherwise a multiply by a 0/1 tensor instead of ``masked_fill`` (five times faster in bf16 on
    CPU): fp32/fp64 multiply by a mask holding 0 or the scale (one pass each way; ``x * scale`` rounds
    exactly as ``(x * 1) * scale``); reduced precision types multiply by a 0/1 mask of their own dtype
    (mixed bf16 x int16 loops are slow) and then by the scale as a Python float, computed at float
    precision before rounding, which a bf16 mask holding the scale would not give. The kernel rounds the
    same way, so both give the same bits.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float, seed: int, use_kernel: bool) -> torch.Tensor:
        threshold, scale = _threshold_and_scale(p)
        if use_kernel:
            x = x.contiguous()
            y = torch.empty_like(x)
            flags = torch.empty(x.shape, dtype=torch.int8) if ctx.needs_input_grad[0] else None
            kind = _KERNEL_DTYPES[x.dtype]
            getattr(KERNEL.lib(), f"dropout_{kind}")(x.numel(), seed, threshold, scale, x.data_ptr(), y.data_ptr(),
                                                     None if flags is None else flags.data_ptr(),
                                                     threads_for(x.numel() // 4096))
            ctx.save_for_backward(flags)
            ctx.kernel, ctx.scale = kind, scale
            return y
        keep = _keep_mask(x.shape, p, x.device, seed)
        ctx.kernel = None
        if x.dtype in (torch.float32, torch.float64):
            mask = keep.to(x.dtype).mul_(scale)
            ctx.save_for_backward(mask)
            ctx.scale = None
            return x * mask
        keep = keep.to(x.dtype)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return (x * keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        if ctx.kernel is not None:
            grad = grad.contiguous()
            out = torch.empty_like(grad)
            getattr(KERNEL.lib(), f"masked_scale_{ctx.kernel}")(grad.numel(), mask.data_ptr(), ctx.scale,
                                                                grad.data_ptr(), out.data_ptr(),
                                                                threads_for(grad.numel() // 4096))
            return out, None, None, None
        if ctx.scale is None:
            return grad * mask, None, None, None
        return (grad * mask).mul_(ctx.scale), None, None, None


def backend(x: torch.Tensor) -> str:
    """Which dropout runs for a tensor like ``x`` in training: "cpu_kernel", "numpy" (CPU) or "torch"."""
    if x.device.type != "cpu":
        return "torch"
    return "cpu_kernel" if x.dtype in _KERNEL_DTYPES and kernel_error() is None else "numpy"


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
    return _KeepScale.apply(x, p, _draw_seed(), backend(x) == "cpu_kernel")


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`dropout`'s cheaper CPU mask (``p`` and ``training`` behave the same).

    ``backend_used`` says which drew the last training mask (:func:`backend`; metrics.json lists it)."""

    backend_used: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0:
            self.backend_used = backend(x)
        return dropout(x, self.p, self.training)


class LoraDropout(Dropout):
    """LoRA's input dropout: under CPU autocast it first casts to the autocast dtype.

    Its output only feeds ``lora_A``'s matmul, which autocast would cast anyway;
    dropping the already-cast tensor saves a copy and a slower fp32 mask pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))
        return super().forward(x)


def _declare_gelu(lib: ctypes.CDLL) -> None:
    i64, ptr, threads = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for name in ("gelu_tanh_f32", "gelu_erf_f32", "gelu_tanh_bf16", "gelu_erf_bf16"):
        getattr(lib, name).argtypes = [i64, ptr, ptr, ptr, threads]


GELU_KERNEL = CKernel(CSRC / "gelu.c", _declare_gelu)
_GELU_TOLERANCE = {torch.float32: 1e-5,  # kernel against F.gelu, absolute and relative, outputs and gradients
                   torch.bfloat16: 2 ** -7}  # two bf16 steps: the derivative is kept in bf16, then multiplied


def gelu_kernel_error() -> str | None:
    """None when the C GELU kernel is built and agrees with ``F.gelu(x, approximate=...)`` in both forms ("tanh"
    and "none", the erf form), float32 and bfloat16, outputs and gradients, within ``_GELU_TOLERANCE`` (checked
    once per process); else why not."""
    return GELU_KERNEL.checked_error(_compare_gelu_kernel_with_torch)


def _compare_gelu_kernel_with_torch() -> str | None:
    x = torch.cat([torch.linspace(-12.0, 12.0, 3001), torch.tensor([0.0, -0.0, 1e-30, 30.0, -30.0])])
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    for dtype, tol in _GELU_TOLERANCE.items():
        xd, gd = x.to(dtype), grad.to(dtype)
        for approximate in ("tanh", "none"):
            y_k, g_k = outputs_and_gradients(lambda t: _Gelu.apply(t, approximate), [xd], gd)
            y_t, g_t = outputs_and_gradients(lambda t: F.gelu(t, approximate=approximate), [xd], gd)
            if not all(a.dtype == dtype and torch.allclose(a.float(), b.float(), rtol=tol, atol=tol)
                       for a, b in ((y_k, y_t), (g_k, g_t))):
                return f"it disagrees with F.gelu(approximate='{approximate}') in {dtype}"
    return None


class _Gelu(torch.autograd.Function):
    """GELU of a float32 or bfloat16 CPU tensor by the C kernel, ``approximate`` "tanh" or "none" (the erf form),
    as F.gelu.

    When a gradient is needed the kernel also writes the derivative ``gelu'(x)``, which is saved instead of
    ``x`` (the same memory, in x's dtype), so the backward is one multiply; PyTorch's backward computes the
    tanh, or the erf and an exp, again. In bf16 that multiply rounds twice (the derivative, then the product),
    where PyTorch's backward rounds once: within two bf16 steps of it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, approximate: str) -> torch.Tensor:
        x = x.contiguous()
        y = torch.empty_like(x)
        derivative = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        form = "tanh" if approximate == "tanh" else "erf"
        kernel = getattr(GELU_KERNEL.lib(), f"gelu_{form}_{_KERNEL_DTYPES[x.dtype]}")
        kernel(x.numel(), x.data_ptr(), y.data_ptr(), None if derivative is None else derivative.data_ptr(),
               threads_for(x.numel() // 4096))
        ctx.save_for_backward(derivative)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (derivative,) = ctx.saved_tensors
        return (grad * derivative).to(derivative.dtype), None


def gelu_backend(x: torch.Tensor) -> str:
    """Which GELU :func:`gelu_tanh` and :func:`gelu_erf` run for a tensor like ``x``: "cpu_kernel" or "torch"."""
    usable = x.device.type == "cpu" and x.dtype in _KERNEL_DTYPES and gelu_kernel_error() is None
    return "cpu_kernel" if usable else "torch"


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x, approximate="tanh")``, by the C kernel for float32 and bfloat16 CPU tensors (module docstring).

    Any shape; the kernel's result differs from PyTorch's by float32 rounding (within 5.2e-7 forward, 2e-6
    backward, of the float64 function). NaN gives NaN; +-inf give +-inf (PyTorch: NaN at -inf).
    """
    return _gelu_by(gelu_backend(x), x, "tanh")


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(x)`` (the erf form), by the C kernel for float32 and bfloat16 CPU tensors (module docstring).

    Any shape; the kernel's result differs from PyTorch's by float32 rounding (within 4.2e-7 forward, 2.6e-7 for
    the derivative, of the float64 function). NaN and -inf give NaN, +inf gives +inf, as PyTorch's.
    """
    return _gelu_by(gelu_backend(x), x, "none")


def _gelu_by(backend_name: str, x: torch.Tensor, approximate: str) -> torch.Tensor:
    return _Gelu.apply(x, approximate) if backend_name == "cpu_kernel" else F.gelu(x, approximate=approximate)


class _KernelGELU(nn.Module):
    """A GELU module of the form ``approximate`` ("tanh" or "none"), by the kernel where :func:`gelu_backend`
    allows. ``backend_used`` says which ran last (metrics.json lists it)."""

    approximate = "none"
    backend_used: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.backend_used = gelu_backend(x)
        return _gelu_by(self.backend_used, x, self.approximate)


class TanhGELU(_KernelGELU):
    """The tanh-form GELU module (transformers' ``GELUTanh``, ``gelu_pytorch_tanh``) as :func:`gelu_tanh`."""

    approximate = "tanh"


class ErfGELU(_KernelGELU):
    """The erf-form GELU module (transformers' ``GELUActivation``, ``nn.GELU()``) as :func:`gelu_erf`."""


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)``,
    faster on CPU.

    Shapes as SDPA: ``q [..., H, T, E]``, ``k [..., Hk, S, E]``, ``v [..., Hk, S, Ev]`` -> ``[..., H, T, Ev]``
    (``Hk`` divides ``H`` with ``enable_gqa``, else equal); ``attn_mask`` boolean (True = attend)
    or additive, broadcastable to ``[..., H, T, S]``. Float32 ``[B, H, T, E]`` inputs on the CPU without an
    ``attn_mask`` (causal or not, with or without dropout, training or inference) run the fused C kernel
    (:func:`attention_backend`); its output is a ``[B, H, T, Ev]`` view of a contiguous ``[B, T, H, Ev]``
    tensor, so merging the heads back costs no copy.
    """
    if attention_backend(q, k, v, attn_mask, dropout_p, enable_gqa) == "cpu_kernel":
        return _fused_attention(q, k, v, dropout_p, is_causal, q.shape[-1] ** -0.5 if scale is None else scale)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if q.device.type != "cpu" or not grad or (dropout_p == 0.0 and q.dtype == torch.float32):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    return _unfused_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)


def _unfused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                       dropout_p: float, is_causal: bool, scale: float | None, enable_gqa: bool) -> torch.Tensor:
    """:func:`attention`'s CPU training path: batched GEMMs, the mask as the first one's addend, our dropout."""
    if enable_gqa and k.shape[-3] != q.shape[-3]:  # grouped key/value heads: each serves H / Hk query heads
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
        v = v.repeat_interleave(q.shape[-3] // v.shape[-3], dim=-3)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    batch, (t, e), s = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2:], k.shape[-2]
    q3 = q.expand(*batch, t, e).reshape(-1, t, e)  # [N, T, E], N = prod(batch)
    k3 = k.expand(*batch, s, e).reshape(-1, s, e)  # [N, S, E]
    v3 = v.expand(*batch, s, v.shape[-1]).reshape(-1, s, v.shape[-1])  # [N, S, Ev]
    bias = _additive_bias(attn_mask, is_causal, batch, t, s, q.dtype, q.device)  # [N, T, S] or None
    # one GEMM that applies the scale (and adds the mask): scale * Q K^T + bias. Without a mask the addend is a
    # zero-stride view that beta=0 ignores; a bmm and a scaling multiply would make one more pass over the
    # [N, T, S] scores forward and one backward, where baddbmm scales Q's and K's smaller gradients
    addend, beta = (q3.new_zeros(()).expand(len(q3), t, s), 0) if bias is None else (bias, 1)
    scores = torch.baddbmm(addend, q3, k3.transpose(1, 2), beta=beta, alpha=scale)  # [N, T, S]
    # softmax of a bf16 tensor accumulates in fp32 internally; its output is all the backward needs
    weights = dropout(torch.softmax(scores, dim=-1), dropout_p)  # [N, T, S]
    return torch.bmm(weights.to(v3.dtype), v3).reshape(*batch, t, v.shape[-1])


_causal_bias_cache: dict[tuple, torch.Tensor] = {}


def _causal_bias(t: int, s: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[T, S]``: 0 where query ``i`` may attend key ``j`` (``j <= i``), ``-inf`` above the diagonal; cached."""
    key = (t, s, dtype, device)
    if key not in _causal_bias_cache:
        if len(_causal_bias_cache) > 64:  # many shapes (variable-length inference): keep the cache small
            _causal_bias_cache.clear()
        upper = torch.ones(t, s, dtype=torch.bool, device=device).triu(1)
        _causal_bias_cache[key] = torch.zeros(t, s, dtype=dtype, device=device).masked_fill_(upper, float("-inf"))
    return _causal_bias_cache[key]


def _additive_bias(attn_mask: torch.Tensor | None, is_causal: bool, batch: torch.Size, t: int, s: int,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """SDPA's ``attn_mask`` and ``is_causal`` as one additive ``[N, T, S]`` tensor (a broadcast view when it can be)."""
    bias = _causal_bias(t, s, dtype, device) if is_causal else None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            mask = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill_(~attn_mask, float("-inf"))
        else:
            mask = attn_mask.to(dtype)
        bias = mask if bias is None else bias + mask
    if bias is None:
        return None
    return bias.expand(*batch, t, s).reshape(-1, t, s)


def _declare_attention(lib: ctypes.CDLL) -> None:
    i64, ptr, f32, threads = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    shape = ctypes.POINTER(i64)
    lib.attention_fwd_f32.argtypes = [shape, shape, ptr, ptr, ptr, f32, ctypes.c_int, ctypes.c_uint64,
                                      ctypes.c_int32, f32, ptr, ptr, threads]
    lib.attention_bwd_f32.argtypes = [shape, shape, ptr, ptr, ptr, ptr, ptr, ctypes.c_int, f32, f32, ptr, ptr, ptr,
                                      threads]
    for name in ("attention_fwd_f32", "attention_bwd_f32"):
        getattr(lib, name).restype = ctypes.c_int


ATTENTION_KERNEL = CKernel(CSRC / "attention.c", _declare_attention)
_ATTENTION_TOLERANCE = 1e-5  # kernel against the unfused path (same dropout mask), relative to the largest value


def attention_kernel_error() -> str | None:
    """None when the C attention kernel is built and agrees with :func:`_unfused_attention` (PyTorch's products
    and softmax, :func:`dropout`'s mask), output and the gradients of q, k and v, within ``_ATTENTION_TOLERANCE``
    (checked once per process, on heads read in place from a ``[B, T, H, E]`` layout); else why not."""
    return ATTENTION_KERNEL.checked_error(_compare_attention_kernel_with_torch)


def _compare_attention_kernel_with_torch() -> str | None:
    g = torch.Generator().manual_seed(0)
    # sizes ending inside a vector and inside a tile of rows; 130 queries span two blocks of rows
    for (b, h, t, s, e, ev), causal, p in (((2, 3, 13, 11, 5, 9), True, 0.3), ((1, 2, 130, 19, 12, 8), False, 0.0)):
        q, k = torch.randn(b, t, h, e, generator=g), torch.randn(b, s, h, e, generator=g)
        v, grad = torch.randn(b, s, h, ev, generator=g), torch.randn(b, h, t, ev, generator=g)
        inputs = [x.transpose(1, 2) for x in (q, k, v)]  # [B, H, *, E] views, as projections give them
        results = []
        for fn in (_fused_attention, lambda *a: _unfused_attention(*a[:3], None, p, causal, e ** -0.5, False)):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1)  # the same dropout seed for both
                results.append(outputs_and_gradients(lambda *x: fn(*x, p, causal, e ** -0.5), inputs, grad))
        difference = largest_relative_difference(*results)
        if not difference <= _ATTENTION_TOLERANCE:
            return f"it disagrees with PyTorch's attention (causal={causal}, dropout {p}) by {difference:.1e}"
    return None


def attention_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
                      dropout_p: float = 0.0, enable_gqa: bool = False) -> str:
    """Which attention :func:`attention` runs for these inputs: "cpu_kernel" (the fused C kernel: float32
    ``[B, H, T, E]`` on the CPU, no ``attn_mask``, the same heads for keys and values, outside autocast,
    ``dropout_p`` 0 or one the 15-bit draws can express) or "torch"."""
    fits = (q.device.type == "cpu" and attn_mask is None and q.dim() == k.dim() == v.dim() == 4
            and q.dtype == k.dtype == v.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
            and q.shape[:2] == k.shape[:2] == v.shape[:2] and k.shape[2] == v.shape[2] and k.shape[3] == q.shape[3]
            and min(q.shape[2:] + k.shape[2:] + v.shape[3:]) > 0
            and (dropout_p == 0.0 or 0 < round(dropout_p * (1 << _BITS)) < (1 << _BITS)))
    return "cpu_kernel" if fits and attention_kernel_error() is None else "torch"


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, is_causal: bool,
                     scale: float) -> torch.Tensor:
    seed = _draw_seed() if dropout_p else 0  # as dropout() draws it: the unfused path's mask for the same state
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    return _FusedAttention.apply(q, k, v, dropout_p, is_causal, scale, seed, grad)


def _rows_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _heads_first(b: int, n: int, h: int, e: int) -> torch.Tensor:
    """An empty ``[B, H, n, E]`` view of a contiguous ``[B, n, H, E]``: the layout projections give and take."""
    return torch.empty(b, n, h, e).transpose(1, 2)


_KERNEL_LANES = 8  # csrc/vecmath.h's W, floats per vector in the C kernels

# The kernel's two calls are PyTorch operators (torch.library), so that what watches the dispatcher sees them:
# torch.profiler lists them by name, and the benchmark's FLOP count and matmul replay (scripts/bench) price them.
@torch.library.custom_op("crossalign::attention", mutates_args=())
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, causal: bool, scale: float, seed: int,
                  keep: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``csrc/attention.c``'s forward: the output ``[B, H, T, Ev]`` (a view of ``[B, T, H, Ev]``) and, when
    ``keep``, the softmax ``[B H, T, S']`` for the backward (``S'``: ``S`` rounded up to whole vectors of the
    kernel's, ``csrc/vecmath.h``'s ``W``), the dropout's keep flags in its sign bits (-P where dropped); an empty
    tensor otherwise."""
    q, k, v = (_rows_contiguous(x) for x in (q, k, v))
    (b, h, t, e), s, ev = q.shape, k.shape[2], v.shape[3]
    threshold, keep_scale = _threshold_and_scale(p) if p else (0, 1.0)
    out = _heads_first(b, t, h, ev)
    probs = torch.empty(b * h, t, -(-s // _KERNEL_LANES) * _KERNEL_LANES) if keep else torch.empty(0)
    dims = (ctypes.c_int64 * 6)(b, h, t, s, e, ev)
    strides = (ctypes.c_int64 * 12)(*(n for x in (q, k, v, out) for n in x.stride()[:3]))
    raise_if_failed(ATTENTION_KERNEL.lib().attention_fwd_f32(
        dims, strides, q.data_ptr(), k.data_ptr(), v.data_ptr(), scale, int(causal), seed, threshold, keep_scale,
        out.data_ptr(), probs.data_ptr() if probs.numel() else None, threads_for(b * h)), "attention")
    return out, probs


@torch.library.custom_op("crossalign::attention_backward", mutates_args=())
def _attention_backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           probs: torch.Tensor, p: float,
                           scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``csrc/attention.c``'s backward: the gradients of q, k and v (views of ``[B, n, H, E]``, as the inputs)
    from the output's and the softmax (with the keep flags) the forward kept."""
    grad, q, k, v = (_rows_contiguous(x) for x in (grad, q, k, v))
    (b, h, t, e), s, ev = q.shape, k.shape[2], v.shape[3]
    dq, dk, dv = _heads_first(b, t, h, e), _heads_first(b, s, h, e), _heads_first(b, s, h, ev)
    dims = (ctypes.c_int64 * 6)(b, h, t, s, e, ev)
    strides = (ctypes.c_int64 * 21)(*(n for x in (q, k, v, grad, dq, dk, dv) for n in x.stride()[:3]))
    raise_if_failed(ATTENTION_KERNEL.lib().attention_bwd_f32(
        dims, strides, q.data_ptr(), k.data_ptr(), v.data_ptr(), grad.data_ptr(), probs.data_ptr(),
        int(p > 0), scale, _threshold_and_scale(p)[1] if p else 1.0,
        dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), threads_for(b * h)), "attention")
    return dq, dk, dv


class _FusedAttention(torch.autograd.Function):
    """``dropout(softmax(scale q k^T + causal mask)) v`` by ``csrc/attention.c``; keeps the softmax (the
    dropout's keep flags in its sign bits) for the backward, as PyTorch's unfused path keeps its weights."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, causal: bool, scale: float,
                seed: int, grad: bool) -> torch.Tensor:
        out, probs = _attention_op(q, k, v, p, causal, scale, seed, grad)
        ctx.save_for_backward(q, k, v, probs)
        ctx.p, ctx.scale = p, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        dq, dk, dv = _attention_backward_op(grad, *ctx.saved_tensors, ctx.p, ctx.scale)
        return dq, dk, dv, None, None, None, None, None


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
    module.backend_used = attention_backend(query, key, value, attention_mask, dropout, gqa)  # metrics.json lists it
    out = attention(query, key, value, attention_mask, dropout, bool(is_causal), scaling, gqa)  # [B, H, T, E]
    return out.transpose(1, 2).contiguous(), None


def _plain_adapter(layer: nn.Module) -> str | None:
    """The one active vanilla LoRA adapter of a peft ``Linear`` (no DoRA or other variant, no ``lora_B``
    bias, adapters on and unmerged), else None: then peft's own forward runs."""
    if layer.disable_adapters or layer.merged:
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or layer.lora_B[name].bias is not None:
        return None
    return name


def _declare_lora(lib: ctypes.CDLL) -> None:
    i64, ptr, f32, threads = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
    lib.lora_down_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, ctypes.c_uint64, ctypes.c_int32, f32, ptr, threads]
    lib.lora_up_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, f32, ptr, threads]
    lib.lora_up_backward_f32.argtypes = [i64, i64, i64, ptr, ptr, ptr, f32, ptr, ptr, threads]
    lib.lora_down_backward_f32.argtypes = [i64, i64, i64, ptr, ptr, f32, ptr, ptr, ptr, ptr, threads]
    for name in ("lora_down_f32", "lora_up_f32", "lora_up_backward_f32", "lora_down_backward_f32"):
        getattr(lib, name).restype = ctypes.c_int


LORA_KERNEL = CKernel(CSRC / "lora.c", _declare_lora)
_LORA_TOLERANCE = 1e-5  # kernel against the unfused products (same dropout mask), relative to the largest value
_LORA_ROWS_PER_THREAD = 256  # rows of x below which another OpenMP thread is not worth its start-up


def lora_kernel_error() -> str | None:
    """None when the C LoRA kernel is built and agrees with the unfused computation (``F.linear`` and
    :func:`dropout`'s mask), outputs and every gradient, with and without dropout, within ``_LORA_TOLERANCE``
    (checked once per process); else why not."""
    return LORA_KERNEL.checked_error(_compare_lora_kernel_with_torch)


def _compare_lora_kernel_with_torch() -> str | None:
    g = torch.Generator().manual_seed(0)
    # 13 rows (a partial group of four), widths ending inside a vector, rank 6 (a group of four and two)
    m, n_in, n_out, r = 13, 21, 19, 6
    x, grad = torch.randn(m, n_in, generator=g), torch.randn(m, n_out, generator=g)
    weight, bias = torch.randn(n_out, n_in, generator=g), torch.randn(n_out, generator=g)
    lora_a, lora_b = torch.randn(r, n_in, generator=g), torch.randn(n_out, r, generator=g)

    def unfused(x, weight, bias, lora_a, lora_b, p):
        dropped = _KeepScale.apply(x, p, 777, False) if p else x
        return F.linear(x, weight, bias) + 0.5 * F.linear(F.linear(dropped, lora_a), lora_b)

    for p in (0.0, 0.3):
        inputs = [x, weight, bias, lora_a, lora_b]
        results = [outputs_and_gradients(fn, inputs, grad)
                   for fn in (lambda *t: _LoraLinear.apply(*t, 0.5, p, 777), lambda *t: unfused(*t, p))]
        for name, k, t in zip(("output", "x", "weight", "bias", "lora_A", "lora_B"), *results):
            if not float((k - t).abs().max()) <= _LORA_TOLERANCE * float(t.abs().max()):
                return f"its {name} {'gradient ' if name != 'output' else ''}disagrees with the unfused LoRA (p={p})"
    return None


class _LoraLinear(torch.autograd.Function):
    """``x W^T + b + scaling drop(x) A^T B^T`` with the rank-r products and the dropout by the C kernel.

    x ``[M, in]`` contiguous; weight ``[out, in]`` (any strides), bias ``[out]`` or None, A ``[r, in]``,
    B ``[out, r]``, all float32 on the CPU -> ``[M, out]``. ``p`` is the dropout probability (0: none), with
    ``seed`` the mask of :func:`dropout` for the same seed. Only the keep flags are saved (a byte per
    element), not ``drop(x)``, which the backward rebuilds from ``x``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
                lora_b: torch.Tensor, scaling: float, p: float, seed: int) -> torch.Tensor:
        m, n_in = x.shape
        r = lora_a.shape[0]
        lora_a = lora_a.contiguous()  # the kernel reads it row by row (a parameter already is)
        threshold, drop_scale = _threshold_and_scale(p) if p else (0, 1.0)
        flags = torch.empty(m, n_in, dtype=torch.int8) if threshold and any(ctx.needs_input_grad) else None
        lib, threads = LORA_KERNEL.lib(), threads_for(m // _LORA_ROWS_PER_THREAD)
        a, bt = x.new_empty(m, r), lora_b.t().contiguous()  # bt [r, out]
        code = lib.lora_down_f32(m, n_in, r, x.data_ptr(), lora_a.data_ptr(), a.data_ptr(), seed, threshold,
                                 drop_scale, None if flags is None else flags.data_ptr(), threads)
        raise_if_failed(code, "LoRA")
        # out = bias + scaling a B^T by the kernel, then += x W^T by the GEMM (beta = 1): where F.linear would copy
        # the bias into out and an addmm_ then read and write out again for the adapter's part
        out = x.new_empty(m, bt.shape[1])  # [M, out]
        bias = None if bias is None else bias.contiguous()
        raise_if_failed(lib.lora_up_f32(m, bt.shape[1], r, a.data_ptr(), bt.data_ptr(),
                                        None if bias is None else bias.data_ptr(), scaling, out.data_ptr(), threads),
                        "LoRA")
        out.addmm_(x, weight.t())
        ctx.save_for_backward(x, weight, lora_a, bt, a, flags)
        ctx.scaling, ctx.drop_scale, ctx.has_bias = scaling, drop_scale, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, lora_a, bt, a, flags = ctx.saved_tensors
        lib, grad = LORA_KERNEL.lib(), grad.contiguous()
        (m, n_in), n_out, r = x.shape, grad.shape[1], a.shape[1]
        threads = threads_for(m // _LORA_ROWS_PER_THREAD)
        grad_a = a.new_empty(m, r)  # scaling grad B
        grad_bt = a.new_zeros(threads, r, n_out)  # scaling a^T grad, one partial sum per thread
        raise_if_failed(lib.lora_up_backward_f32(m, n_out, r, grad.data_ptr(), bt.data_ptr(), a.data_ptr(), ctx.scaling,
                                                 grad_a.data_ptr(), grad_bt.data_ptr(), threads), "LoRA")
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None  # the base's part; the kernel adds LoRA's
        grad_lora_a = a.new_zeros(threads, r, n_in)
        code = lib.lora_down_backward_f32(m, n_in, r, x.data_ptr(), None if flags is None else flags.data_ptr(),
                                          ctx.drop_scale, grad_a.data_ptr(), lora_a.data_ptr(), grad_lora_a.data_ptr(),
                                          None if grad_x is None else grad_x.data_ptr(), threads)
        raise_if_failed(code, "LoRA")
        grad_weight = grad.t() @ x if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, grad_lora_a.sum(0), grad_bt.sum(0).t(), None, None, None


def _fused_lora_dropout(layer: nn.Module, name: str, x: torch.Tensor) -> float | None:
    """The dropout probability with which :class:`_LoraLinear` computes ``layer``'s adapter ``name`` for input
    ``x`` (0.0: no dropout), or None where it does not apply: autocast, other dtypes than float32 or devices than
    the CPU, a base layer other than ``nn.Linear`` or transformers' ``Conv1D``, a dropout of its own, or no kernel."""
    from transformers.pytorch_utils import Conv1D
    base, drop = layer.base_layer, layer.lora_dropout[name]
    tensors = (x, base.weight, layer.lora_A[name].weight, layer.lora_B[name].weight) + (
        () if base.bias is None else (base.bias,))
    if (x.device.type != "cpu" or torch.is_autocast_enabled("cpu") or type(base) not in (nn.Linear, Conv1D)
            or any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors)):
        return None
    if type(drop) is nn.Identity or not drop.training:
        p = 0.0
    elif type(drop) in (Dropout, LoraDropout) and 0 < round(drop.p * (1 << _BITS)) < (1 << _BITS):
        p = drop.p
    else:  # another dropout, or p too close to 0 or 1 for 15-bit draws (dropout() then runs F.dropout)
        return None
    return p if lora_kernel_error() is None else None


def lora_forward(layer: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """peft LoRA ``Linear.forward``: ``base(x) + lora_B(lora_A(dropout(x))) * scaling``.

    ``x [..., in]`` -> ``[..., out]``. In float32 on the CPU the C kernel computes the adapter's products with
    its dropout fused in (:class:`_LoraLinear`, the same mask as :func:`dropout` for the same seed); elsewhere
    the low-rank product is added into ``base(x)`` by one ``addmm`` (see the module docstring). Anything
    peft's forward does beyond one plain adapter (extra arguments, several or variant adapters, merged or
    disabled adapters, mixed dtypes without autocast) runs peft's forward itself. ``layer.backend_used``
    says which ran last: "lora_cpu_kernel" or "torch".
    """
    name = None if args or kwargs else _plain_adapter(layer)
    if name is not None and not torch.is_autocast_enabled(x.device.type):
        dtypes = {x.dtype, layer.base_layer.weight.dtype, layer.lora_A[name].weight.dtype,
                  layer.lora_B[name].weight.dtype}
        name = name if len(dtypes) == 1 else None  # mixed dtypes: peft casts and casts back
    if name is None:
        return type(layer).forward(layer, x, *args, **kwargs)
    p = _fused_lora_dropout(layer, name, x)
    layer.backend_used = "torch" if p is None else "lora_cpu_kernel"
    if p is not None:
        base = layer.base_layer
        weight = base.weight if type(base) is nn.Linear else base.weight.t()  # [out, in]; Conv1D keeps [in, out]
        out = _LoraLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), weight, base.bias, layer.lora_A[name].weight,
                                layer.lora_B[name].weight, layer.scaling[name], p, _draw_seed() if p else 0)
        return out.view(*x.shape[:-1], out.shape[-1])
    if torch.is_autocast_enabled(x.device.type) and x.dtype == torch.float32:
        # autocast would cast x for the base product and, after the dropout ran on the float32 x, once more for
        # lora_A: one cast here, and the dropout in the compute dtype (bf16 at M = 3200, casts + dropout +
        # gradient sums forward + backward, medians of 7 profiled passes on one AVX2 core: 11.0 -> 8.1 ms for
        # 384 -> 384, 7.4 -> 6.3 for 384 -> 1536, 37.4 -> 27.2 for 1536 -> 384)
        x = x.to(torch.get_autocast_dtype(x.device.type))
    result = layer.base_layer(x)  # [..., out]
    a = layer.lora_A[name](layer.lora_dropout[name](x))  # [..., r]
    weight_b = layer.lora_B[name].weight  # [out, r]
    # B^T [r, out] made contiguous (a copy of r x out numbers): autograd computes a matrix's gradient in
    # that matrix's own layout, and for the transposed view it would run (g^T a)^T, an [out, M] @ [M, r]
    # product that runs 5-13x slower than a^T g on one core (see the module docstring)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), a.reshape(-1, a.shape[-1]), weight_b.t().contiguous(),
                      alpha=layer.scaling[name])  # [M, out]: base + scaling * a B^T, one pass
    return out.view(result.shape)


_NARROW = 64  # in_features below which linear() takes its backward's products transposed


class _NarrowLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` whose backward computes ``grad_w`` as ``(x^T g)^T`` and ``grad_x`` as
    ``(W^T g^T)^T``: for few input features MKL runs these orientations several times faster than
    autograd's ``g^T x`` and ``g W`` (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # [M, out]
        grad_x = (weight.t() @ g.t()).t().reshape(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = (x.reshape(-1, x.shape[-1]).t() @ g).t() if ctx.needs_input_grad[1] else None
        grad_b = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``x [..., in]``, ``weight [out, in]`` -> ``[..., out]``. With fewer than 64
    input features, in float32 on the CPU outside autocast and when a gradient is needed, its backward takes the
    products transposed (module docstring); otherwise it is ``F.linear``."""
    narrow = (weight.shape[1] < _NARROW and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
              and not torch.is_autocast_enabled("cpu") and torch.is_grad_enabled()
              and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)))
    return _NarrowLinear.apply(x, weight, bias) if narrow else F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` computed by :func:`linear` (the same parameters and state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def install(model: nn.Module) -> nn.Module:
    """Use :class:`Dropout`, :func:`lora_forward`, :class:`TanhGELU`, :class:`ErfGELU` and :func:`attention`
    inside a transformers model (in place; returns it).

    Every plain ``nn.Dropout`` submodule is replaced by ``Dropout`` with the same
    ``p``; every peft LoRA ``Linear`` runs :func:`lora_forward`; every transformers
    ``GELUTanh`` (PyTorch's tanh GELU) becomes ``TanhGELU``, every ``GELUActivation``
    computed by ``F.gelu`` and every ``nn.GELU()`` of the erf form ``ErfGELU``; a model whose
    config uses the SDPA attention is switched to the same computation
    registered as ``ATTENTION_NAME``. Families that do not look attention up in
    transformers' registry keep their own attention.
    """
    from transformers.activations import GELUActivation, GELUTanh
    for parent in list(model.modules()):
        lora = isinstance(getattr(parent, "lora_dropout", None), nn.ModuleDict)  # a peft LoRA layer
        if lora:
            parent.cast_input_dtype_enabled = False  # peft would cast LoRA's input to fp32 under autocast
            from peft.tuners.lora.layer import Linear as LoraLinear
            if type(parent) is LoraLinear:  # not its subclasses (quantised layers have forwards of their own)
                parent.forward = types.MethodType(lora_forward, parent)
            parent = parent.lora_dropout
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, (LoraDropout if lora else Dropout)(child.p))
            elif type(child) is GELUTanh:  # its Python form computes the same function
                setattr(parent, name, TanhGELU())
            elif ((type(child) is GELUActivation and child.act is F.gelu)
                  or (type(child) is nn.GELU and child.approximate == "none")):
                setattr(parent, name, ErfGELU())
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
        from transformers import AttentionInterface
        AttentionInterface.register(ATTENTION_NAME, _transformers_attention)
        config._attn_implementation = ATTENTION_NAME
    return model

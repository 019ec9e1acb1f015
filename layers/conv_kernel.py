"""Mamba's causal depthwise convolution and the SiLU after it as a compiled CPU kernel: ``csrc/causal_conv.c``,
built on first use.

In PyTorch (``layers.mamba.causal_depthwise_conv1d`` then ``F.silu``) the block's convolution is K
multiply-adds of shifted views plus a padding copy, the SiLU two more passes, and the backward about ten
passes over ``[B, L, E]`` (the shifted views' gradients, the weight's sums, SiLU's derivative). The kernel
does the forward in one pass and the backward in one, recomputing the convolution from ``x`` (K
multiply-adds per element) instead of keeping it; it reads ``x`` in place with its strides, which for Mamba
is one half of the input projection's output.

Built and loaded on first use by ``layers.ckernel`` (system C compiler, cached per source, flags and CPU);
without a compiler, or if the build fails, ``unavailable_reason()`` says why and callers use PyTorch.
Only float32 tensors on the CPU. The batch is split across PyTorch's own OpenMP threads (``layers.ckernel``).
"""
from __future__ import annotations

import ctypes
from typing import Any

import torch

from layers.ckernel import CSRC, CKernel, raise_if_failed, threads_for

MAX_WIDTH = 16  # the kernel's largest convolution width (csrc/causal_conv.c's MAX_K)


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.causal_conv_silu_fwd_f32.argtypes = [i64] * 6 + [ptr] * 4 + [ctypes.c_int]
    lib.causal_conv_silu_bwd_f32.argtypes = [i64] * 6 + [ptr] * 7 + [ctypes.c_int]
    lib.causal_conv_silu_fwd_f32.restype = lib.causal_conv_silu_bwd_f32.restype = ctypes.c_int


KERNEL = CKernel(CSRC / "causal_conv.c", _declare)


class CausalConvSiLU(torch.autograd.Function):
    """``silu(causal_depthwise_conv1d(x, weight, bias))`` by the C kernel.

    x ``[B, L, E]`` float32 on the CPU with unit stride over channels (any batch and time strides); weight
    ``[E, 1, K]`` (``nn.Conv1d(E, E, K, groups=E)``'s layout), K <= ``MAX_WIDTH``; bias ``[E]`` or None ->
    ``[B, L, E]`` contiguous.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bsz, length, e = x.shape
        if weight.shape[-1] > MAX_WIDTH:
            raise ValueError(f"the C causal convolution takes widths up to {MAX_WIDTH}, got {weight.shape[-1]}")
        wt = weight.reshape(e, -1).t().contiguous()  # [K, E]
        bias_c = None if bias is None else bias.contiguous()
        y = x.new_empty(bsz, length, e)
        code = KERNEL.lib().causal_conv_silu_fwd_f32(bsz, length, e, wt.shape[0], x.stride(0), x.stride(1),
                                                     x.data_ptr(), wt.data_ptr(),
                                                     None if bias_c is None else bias_c.data_ptr(), y.data_ptr(),
                                                     threads_for(bsz))
        raise_if_failed(code, "causal convolution")
        ctx.save_for_backward(x, wt, bias_c)
        ctx.weight_shape = weight.shape
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor):
        x, wt, bias = ctx.saved_tensors
        bsz, length, e = x.shape
        k = wt.shape[0]
        gy = gy.contiguous()
        threads = threads_for(bsz)
        gx = torch.empty(bsz, length, e, dtype=x.dtype)
        gw, gb = x.new_zeros(threads, k, e), x.new_zeros(threads, e)  # sums over the batch: one per thread
        code = KERNEL.lib().causal_conv_silu_bwd_f32(bsz, length, e, k, x.stride(0), x.stride(1), x.data_ptr(),
                                                     wt.data_ptr(), None if bias is None else bias.data_ptr(),
                                                     gy.data_ptr(), gx.data_ptr(), gw.data_ptr(), gb.data_ptr(),
                                                     threads)
        raise_if_failed(code, "causal convolution")
        grad_weight = gw.sum(0).t().reshape(ctx.weight_shape)
        return gx, grad_weight, None if bias is None else gb.sum(0)

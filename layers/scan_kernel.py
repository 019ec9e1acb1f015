"""Mamba's selective scan as a compiled CPU kernel: ``csrc/selective_scan.c``, built on first use.

The PyTorch scan (``layers.mamba._ScanCore``) runs the recurrence as about twenty elementwise passes
over ``[B, T, N, D]`` chunks per training step, each writing its result to memory for the next to read
back; the C kernel keeps those intermediates in registers and computes each decay ``exp(delta A)``
where it is used, so forward + backward take about a quarter of the time on one CPU core (README,
"Speed"). Same maths, same layout, same saved tensors (the states entering each segment of
``SEGMENT`` steps; the backward recomputes the rest).

Built and loaded on first use by ``layers.ckernel`` (system C compiler, cached per source, flags and
CPU); without a compiler, or if the build fails, ``unavailable_reason()`` says why and callers use the
PyTorch scan.

Only float32 tensors on the CPU. The batch is split across PyTorch's own OpenMP threads (``layers.ckernel``).
"""
from __future__ import annotations

import ctypes
import math
from typing import Any

import torch

from layers.ckernel import CSRC, CKernel, raise_if_failed, threads_for

SOURCE = CSRC / "selective_scan.c"
SEGMENT = 32  # time steps between the states kept for the backward (at most SEGMENT + 1 states rebuilt at once)


def _declare(lib: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.scan_fwd.argtypes = [i64] * 5 + [ctypes.c_int] + [ptr] * 7
    lib.scan_bwd.argtypes = [i64] * 5 + [ctypes.c_int] + [ptr] * 13
    lib.scan_fwd.restype = lib.scan_bwd.restype = ctypes.c_int
    lib.gate_fwd_f32.argtypes = [i64] * 5 + [ptr] * 5 + [ctypes.c_int]
    lib.gate_bwd_f32.argtypes = [i64] * 5 + [ptr] * 9 + [ctypes.c_int]
    lib.softplus_bias_f32.argtypes = [i64] * 2 + [ptr] * 4 + [ctypes.c_int]


KERNEL = CKernel(SOURCE, _declare)


def unavailable_reason() -> str | None:
    """None when the kernel is built and loaded (building it on the first call), else why not."""
    return KERNEL.unavailable_reason()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class KernelScanCore(torch.autograd.Function):
    """``_ScanCore`` of layers/mamba.py computed by the C kernel: y_t = <h_t, C_t>,
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t. Inputs float32, contiguous, on the CPU:
    u, delta [B, L, D]; At = A^T [N, D]; B, C [B, L, N] -> y [B, L, D]."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, delta: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor) -> torch.Tensor:
        lib = KERNEL.lib()
        bsz, length, d = u.shape
        n = At.shape[0]
        At2 = At * math.log2(math.e)  # the kernel computes exp(x) as 2^(x log2 e)
        y = torch.empty_like(u)
        hs = u.new_empty(bsz, (length - 1) // SEGMENT, n, d) if any(ctx.needs_input_grad) else None
        code = lib.scan_fwd(bsz, length, d, n, SEGMENT, threads_for(bsz), *map(_ptr, (u, delta, At2, B, C, y, hs)))
        raise_if_failed(code, "selective scan")
        ctx.save_for_backward(u, delta, At, B, C, hs)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor):
        lib = KERNEL.lib()
        u, delta, At, B, C, hs = ctx.saved_tensors
        bsz, length, d = u.shape
        n = At.shape[0]
        gy, At2 = gy.contiguous(), At * math.log2(math.e)
        gu, gdelta, gB, gC = torch.empty_like(u), torch.empty_like(u), torch.empty_like(B), torch.empty_like(C)
        threads = threads_for(bsz)
        gAt = torch.zeros(threads, n, d, dtype=At.dtype)  # a sum over the batch: one partial per thread
        code = lib.scan_bwd(bsz, length, d, n, SEGMENT, threads,
                            *map(_ptr, (u, delta, At, At2, B, C, hs, gy, gu, gdelta, gAt, gB, gC)))
        raise_if_failed(code, "selective scan")
        return gu, gdelta, gAt.sum(0), gB, gC


class KernelGate(torch.autograd.Function):
    """The end of the selective scan by the C kernel: ``(y + D u) * silu(z)``, one pass forward and one backward
    (which recomputes ``y + D u`` and ``sigmoid(z)``). Float32 on the CPU: y, u ``[B, L, D]`` contiguous; D ``[D]``;
    z ``[B, L, D]`` with unit stride over channels (Mamba's gate, a strided half of its projection) ->
    ``[B, L, D]``."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, u: torch.Tensor, D: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        bsz, length, d = y.shape
        out = torch.empty_like(y)
        KERNEL.lib().gate_fwd_f32(bsz, length, d, z.stride(0), z.stride(1),
                                  *map(_ptr, (y, u, D, z, out)), threads_for(bsz))
        ctx.save_for_backward(y, u, D, z)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: torch.Tensor):
        y, u, D, z = ctx.saved_tensors
        bsz, length, d = y.shape
        g = g.contiguous()
        threads = threads_for(bsz)
        gy, gu, gz = torch.empty_like(y), torch.empty_like(u), torch.empty(bsz, length, d, dtype=z.dtype)
        gD = D.new_zeros(threads, d)  # a sum over the batch: one partial per thread
        KERNEL.lib().gate_bwd_f32(bsz, length, d, z.stride(0), z.stride(1),
                                  *map(_ptr, (y, u, D, z, g, gy, gu, gz, gD)), threads)
        return gy, gu, gD.sum(0), gz


class KernelSoftplus(torch.autograd.Function):
    """The scan's step sizes by the C kernel: ``softplus(x + bias)``, its derivative ``sigmoid(x + bias)`` written
    by the same pass and kept for the backward (one multiply, and the bias's sum). Float32 on the CPU: x
    ``[B, L, D]`` contiguous; bias ``[D]`` or None -> ``[B, L, D]``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bsz, length, d = x.shape
        out = torch.empty_like(x)
        derivative = torch.empty_like(x) if any(ctx.needs_input_grad) else None
        KERNEL.lib().softplus_bias_f32(bsz * length, d, *map(_ptr, (x, bias, out, derivative)), threads_for(bsz))
        ctx.save_for_backward(derivative)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: torch.Tensor):
        (derivative,) = ctx.saved_tensors
        gx = g * derivative
        return gx, gx.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[1] else None

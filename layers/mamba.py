"""Mamba blocks with a pure-PyTorch selective scan and an optional CUDA backend.

Mamba (Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", 2023) is a gated block around a *selective* state space model: for
each channel ``d`` and state index ``n`` the hidden state follows

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,      y_t = <h_t, C_t> + D * u_t

where ``delta``, ``B`` and ``C`` depend on the input (the "selection").

What lives here:

- ``selective_scan_ref``: the recurrence written step by step (the reference);
- ``selective_scan_torch``: the same maths, fast, in plain PyTorch (CPU and
  CUDA, no custom kernels), with a hand-written backward (a reverse scan);
- ``selective_scan_cpu``: the same again with its core in a compiled C kernel
  (``layers.scan_kernel``, built on first use), falling back to the PyTorch
  scan where there is no compiler, or for dtypes other than float32;
- ``causal_depthwise_conv1d``: the block's causal convolution over time,
  channels last; ``causal_conv_silu`` the same followed by SiLU, as the block
  uses it, in a compiled C kernel on the CPU (``layers.conv_kernel``);
- ``Mamba``: one module whose parameters are named and shaped exactly as in
  ``mamba_ssm.modules.mamba_simple.Mamba`` (``in_proj``, ``conv1d``,
  ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so a state_dict
  moves between backends unchanged. ``backend="auto"`` uses mamba_ssm's CUDA
  selective scan when it is installed and the input is on CUDA, the C kernel
  on the CPU, our PyTorch scan otherwise;
- ``MambaStack``: pre-norm residual Mamba blocks with a final norm.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from layers import conv_kernel, scan_kernel
from layers.ckernel import largest_relative_difference, outputs_and_gradients
from layers.fast_ops import linear

BACKENDS = ("auto", "cuda", "torch")

__all__ = ["selective_scan_ref", "selective_scan_torch", "selective_scan_cpu", "cpu_kernel_error",
           "causal_depthwise_conv1d", "causal_conv_silu", "conv_kernel_error", "cuda_ops_available",
           "cuda_kernel_limits", "probe_cuda_ops", "Mamba", "MambaStack"]


# --------------------------------------------------------------------------- checks


def _check_scan_inputs(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                       delta_bias: torch.Tensor | None) -> None:
    """Raise a ValueError naming the offending argument when shapes do not match."""
    if u.dim() != 3:
        raise ValueError(f"u must be [batch, d_inner, length], got shape {tuple(u.shape)}")
    b, d, length = u.shape
    if length < 1:
        raise ValueError("the sequence length (last dim of u) must be at least 1")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be [d_inner={d}, d_state], got {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (b, n, length):
            raise ValueError(f"{name} must be [batch={b}, d_state={n}, length={length}] "
                             f"(input-dependent, as in mamba_ssm), got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be [d_inner={d}], got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def _prepare_delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, delta_softplus: bool) -> torch.Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta


# --------------------------------------------------------------------------- reference


def selective_scan_ref(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """Selective scan of Mamba (Gu & Dao 2023, Algorithm 2), one time step at a time.

    This is the slow, obviously correct reference that the fast scan is tested
    against; autograd differentiates it directly.

    Args (shapes as in ``mamba_ssm``'s ``selective_scan_fn``):
        u: input ``[B, D_in, L]``.
        delta: step sizes ``[B, D_in, L]`` (before ``delta_bias``/softplus).
        A: state matrix diagonal ``[D_in, N]`` (negative for a stable system).
        B, C: input and output projections ``[B, N, L]``.
        D: optional skip ``[D_in]``; z: optional gate ``[B, D_in, L]`` (``y * silu(z)``).
        delta_bias: optional ``[D_in]`` added to ``delta``; delta_softplus: apply softplus to it.
    Returns:
        y ``[B, D_in, L]`` in the dtype of the computation (that of the inputs).
    """
    _check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    batch, d_in, length = u.shape
    h = u.new_zeros(batch, d_in, A.shape[1])  # [B, D_in, N]
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)  # [B, D_in, N]
        dBu = (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]  # [B, D_in, N]
        h = dA * h + dBu
        ys.append((h * C[:, None, :, t]).sum(-1))  # [B, D_in]
    y = torch.stack(ys, dim=-1)  # [B, D_in, L]
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return y


# --------------------------------------------------------------------------- fast torch scan


# Elements per [B, T, N, D] work buffer: on CPU four of them should sit in the
# last-level cache (page faults on fresh large allocations and DRAM traffic cost
# more than the arithmetic); on CUDA fewer, larger chunks mean fewer launches.
_CHUNK_ELEMS = {"cpu": 1 << 19, "cuda": 1 << 25}


def _chunk_len(batch: int, n: int, d: int, length: int, device: torch.device) -> int:
    """Time steps per chunk T so that one [B, T, N, D] buffer holds about _CHUNK_ELEMS elements."""
    target = _CHUNK_ELEMS.get(device.type, _CHUNK_ELEMS["cuda"])
    return max(1, min(length, target // max(1, batch * n * d)))


def _buffer(flat: torch.Tensor, *shape: int) -> torch.Tensor:
    """A contiguous view of the first prod(shape) elements of a flat workspace."""
    return flat[: math.prod(shape)].view(shape)


def _chunk_states(dt: torch.Tensor, dtu: torch.Tensor, At2: torch.Tensor, Bc: torch.Tensor,
                  h_prev: torch.Tensor | None, dA: torch.Tensor, h: torch.Tensor) -> tuple:
    """Fill dA = exp(delta A) and the states h of one time chunk, starting from h_prev.

    dt, dtu [B, T, D]; At2 = A^T log2(e) [N, D]; Bc [B, T, N]; h_prev [B, N, D] or None (zero state);
    dA, h [B, T, N, D] buffers written in place. Returns the per-step views of (dA, h).
    """
    # every factor is exp of the step's own delta*A; At2 = A^T * log2(e) since exp2 is ~2x faster than exp on CPU
    torch.mul(dt.unsqueeze(2), At2, out=dA).exp2_()
    torch.mul(Bc.unsqueeze(-1), dtu.unsqueeze(2), out=h)  # delta u B, then scanned in place
    das, hs = dA.unbind(1), h.unbind(1)  # T views [B, N, D], made once (indexing costs per call)
    if h_prev is not None:
        hs[0].addcmul_(das[0], h_prev)
    for t in range(1, len(hs)):
        hs[t].addcmul_(das[t], hs[t - 1])
    return das, hs


class _ScanCore(torch.autograd.Function):
    """y_t = <h_t, C_t>,  h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t, with a hand-written backward.

    Internal layout (batch, time, state, channel): u, delta [B, L, D]; At = A^T [N, D];
    B, C [B, L, N]; y [B, L, D]. Channels last so sums over the state index are
    vectorised across channels.

    Time is cut into chunks of T steps whose [B, T, N, D] tensors are built in a
    few reused buffers; within a chunk the recurrence runs as one fused
    multiply-add per step on a [B, N, D] slab, so the Python loop has L steps in
    all. Only the state entering each chunk is saved for the backward, which
    recomputes a chunk's states from it (as FlashAttention recomputes attention):
    saved memory is O(B L D + B D N L / T) instead of O(B L D N), and on CPU this
    is faster than keeping the states because large fresh allocations are slow.
    Each decay factor is exp of a single step's delta*A (never a ratio of
    cumulative products), so nothing overflows for long L or large delta.

    Backward, derived from the recurrence, with g_t = dLoss/dh_t:
        g_t = gy_t C_t + exp(delta_{t+1} A) g_{t+1}        (reverse scan, carried across chunks)
        q_t = g_t * exp(delta_t A) * h_{t-1}               (= dLoss/d(delta_t A); h_{-1} = 0)
        dA = sum_{b,t} q_t delta_t,   ddelta = sum_n q_t A + u sum_n g_t B_t,
        du = delta sum_n g_t B_t,     dB_t = sum_d g_t delta_t u_t,   dC_t = sum_d gy_t h_t.
    """

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, delta: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor) -> torch.Tensor:
        bsz, length, d = u.shape
        n = At.shape[0]
        T = _chunk_len(bsz, n, d, length, u.device)
        starts = range(0, length, T)
        dtu = delta * u  # [B, L, D]
        At2 = At * math.log2(math.e)
        work = u.new_empty(2, bsz * T * n * d)
        y = u.new_empty(bsz, length, d)
        keep = any(ctx.needs_input_grad)
        # with grad: h_in[c - 1] = state entering chunk c (chunk 0 starts from zero), kept for the
        # backward; without: one slab carrying the state from chunk to chunk
        n_slabs = len(starts) - 1 if keep else min(len(starts) - 1, 1)
        h_in = u.new_empty(n_slabs, bsz, n, d)
        h_prev = None
        for c, t0 in enumerate(starts):
            t1 = min(t0 + T, length)
            tc = t1 - t0
            dA, h = _buffer(work[0], bsz, tc, n, d), _buffer(work[1], bsz, tc, n, d)
            _, hs = _chunk_states(delta[:, t0:t1], dtu[:, t0:t1], At2, B[:, t0:t1], h_prev, dA, h)
            # y[b, t, d] = sum_n C[b, t, n] h[b, t, n, d]
            y[:, t0:t1] = torch.bmm(C[:, t0:t1].reshape(bsz * tc, 1, n), h.view(bsz * tc, n, d)).view(bsz, tc, d)
            if t1 < length:  # the next chunk overwrites the buffers: keep its entering state
                h_prev = h_in[c if keep else 0].copy_(hs[-1])
        ctx.chunk = T
        ctx.save_for_backward(u, delta, At, B, C, h_in if keep else None)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor):
        u, delta, At, B, C, h_in = ctx.saved_tensors
        bsz, length, d = u.shape
        n = At.shape[0]
        T = ctx.chunk
        dtu = delta * u
        At2 = At * math.log2(math.e)
        work = u.new_empty(4, bsz * T * n * d)
        carry = u.new_empty(bsz, n, d)  # exp(delta_{t1} A) g_{t1} flowing back into the previous chunk
        gu, gdelta = torch.empty_like(u), torch.empty_like(u)
        gB, gC = torch.empty_like(B), torch.empty_like(C)
        gAt = torch.zeros_like(At)
        starts = list(range(0, length, T))
        for c in range(len(starts) - 1, -1, -1):
            t0 = starts[c]
            t1 = min(t0 + T, length)
            tc, m = t1 - t0, bsz * (t1 - t0)
            dA, h, g, tmp = (_buffer(work[i], bsz, tc, n, d) for i in range(4))
            h_prev = h_in[c - 1] if c > 0 else None
            dt, u_c, gy_c = delta[:, t0:t1], u[:, t0:t1], gy[:, t0:t1]
            das, hs = _chunk_states(dt, dtu[:, t0:t1], At2, B[:, t0:t1], h_prev, dA, h)
            # dC = sum_d gy h, as [m, 1, D] @ [m, D, N] (h read transposed: no temporary)
            gC[:, t0:t1] = torch.bmm(gy_c.reshape(m, 1, d), h.view(m, n, d).transpose(1, 2)).view(bsz, tc, n)
            # reverse scan of g = gy C + exp(delta_{t+1} A) g_{t+1}
            torch.mul(C[:, t0:t1].unsqueeze(-1), gy_c.unsqueeze(2), out=g)
            gs = g.unbind(1)
            if c < len(starts) - 1:
                gs[-1].add_(carry)
            for t in range(tc - 2, -1, -1):
                gs[t].addcmul_(das[t + 1], gs[t + 1])
            if c > 0:
                torch.mul(das[0], gs[0], out=carry)
            # sum_n g B  [B, tc, D]
            gBsum = torch.bmm(B[:, t0:t1].reshape(m, 1, n), g.view(m, n, d)).view(bsz, tc, d)
            gu[:, t0:t1] = gBsum * dt
            # dB = sum_d g delta u
            gB[:, t0:t1] = torch.bmm(dtu[:, t0:t1].reshape(m, 1, d), g.view(m, n, d).transpose(1, 2)).view(bsz, tc, n)
            # q = g * exp(delta A) * h_{t-1}, in place in dA
            q = dA.mul_(g)
            q[:, 1:].mul_(h[:, :-1])
            if h_prev is not None:
                q[:, 0].mul_(h_prev)
            else:
                q[:, 0].zero_()
            gdelta[:, t0:t1] = torch.addcmul(torch.mul(q, At, out=tmp).sum(2), gBsum, u_c)
            gAt += torch.mul(q, dt.unsqueeze(2), out=tmp).sum((0, 1))
        return gu, gdelta, gAt, gB, gC


def _torch_gate(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """The end of the scan in PyTorch: ``y + D u``, then times ``silu(z)``; y, u, z ``[B, L, D]``."""
    if D is not None:
        y = torch.addcmul(y, u, D)
    if z is not None:  # elementwise: any layout will do, no copy
        y = y * F.silu(z)
    return y


def _torch_softplus(delta: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.softplus(delta if bias is None else delta + bias)


def _selective_scan(core: Callable[..., torch.Tensor], u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor,
                    B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                    delta_bias: torch.Tensor | None, delta_softplus: bool,
                    gate: Callable[..., torch.Tensor] = _torch_gate,
                    softplus: Callable[..., torch.Tensor] = _torch_softplus) -> torch.Tensor:
    """What the scans share around their core: layout, dtype, delta's bias and softplus, the D skip, the z gate.
    ``core(work_dtype)`` returns the autograd Function's ``apply`` to use; ``gate(y, u, D, z)`` (``[B, L, D]``
    layouts, D or z None when absent) computes the D skip and the z gate; ``softplus(delta, bias)`` (bias None
    when absent) delta's softplus with its bias added."""
    _check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    out_dtype = u.dtype
    work = torch.float32 if u.dtype in (torch.float16, torch.bfloat16) else u.dtype
    with torch.autocast(u.device.type, enabled=False):
        # [B, D, L] -> [B, L, D]: free when the caller's tensor is a transposed [B, L, D] (as in Mamba)
        tl = lambda t: t.to(work).transpose(1, 2).contiguous()  # noqa: E731
        u_w = tl(u)
        delta_w = tl(delta)
        bias = None if delta_bias is None else delta_bias.to(work)
        if delta_softplus:
            delta_w = softplus(delta_w, bias)
        elif bias is not None:
            delta_w = delta_w + bias
        y = core(work)(u_w, delta_w, A.to(work).t().contiguous(), tl(B), tl(C))  # [B, L, D]
        y = gate(y, u_w, None if D is None else D.to(work), None if z is None else z.to(work).transpose(1, 2))
    return y.to(out_dtype).transpose(1, 2)


def selective_scan_torch(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                         delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """Fast selective scan of Mamba (Gu & Dao 2023) in plain PyTorch; same maths as ``selective_scan_ref``.

    Args and shapes as ``selective_scan_ref`` (and mamba_ssm's ``selective_scan_fn``):
    u, delta ``[B, D_in, L]``; A ``[D_in, N]``; B, C ``[B, N, L]``; D, delta_bias
    ``[D_in]``; z ``[B, D_in, L]``. Returns y ``[B, D_in, L]`` (a transposed view of
    a ``[B, L, D_in]`` tensor, the layout a following linear layer wants).

    Works on any device and any ``L >= 1``. Half-precision inputs (float16 or
    bfloat16, e.g. under autocast) are scanned in float32 with autocast off and
    the result is cast back, because a long product of decays in 8 mantissa
    bits loses the state. Memory kept for the backward is O(B L D_in), not
    O(B L D_in N): states are recomputed chunk by chunk (see ``_ScanCore``).
    """
    return _selective_scan(lambda work: _ScanCore.apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def selective_scan_cpu(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                       C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                       delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """``selective_scan_torch`` with its core, and its D skip and z gate when both are given, computed by the
    compiled C kernel (``layers.scan_kernel``) when the scan runs in float32 on the CPU and the kernel passed its
    first-call check (``cpu_kernel_error``), and delta's bias and softplus by its softplus kernel; otherwise exactly
    ``selective_scan_torch``. Same arguments and result."""
    def core(work: torch.dtype) -> Callable[..., torch.Tensor]:
        use = u.device.type == "cpu" and work == torch.float32 and cpu_kernel_error() is None
        return scan_kernel.KernelScanCore.apply if use else _ScanCore.apply

    def gate(y: torch.Tensor, u_w: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
        use = (D is not None and z is not None and y.device.type == "cpu" and y.dtype == D.dtype == z.dtype
               == torch.float32 and z.stride(-1) == 1 and cpu_kernel_error() is None)
        return scan_kernel.KernelGate.apply(y, u_w, D.contiguous(), z) if use else _torch_gate(y, u_w, D, z)

    def softplus(delta_w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        use = (delta_w.device.type == "cpu" and delta_w.dtype == torch.float32 and delta_w.is_contiguous()
               and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
               and cpu_kernel_error() is None)
        return scan_kernel.KernelSoftplus.apply(delta_w, bias) if use else _torch_softplus(delta_w, bias)
    return _selective_scan(core, u, delta, A, B, C, D, z, delta_bias, delta_softplus, gate, softplus)


def cpu_kernel_error() -> str | None:
    """None when the C scan kernel is built and agrees with ``_ScanCore`` (forward and every gradient, on
    a small problem with a partial channel block and several segments, run once per process), else why not."""
    return scan_kernel.KERNEL.checked_error(_compare_kernel_with_torch_scan)


def _compare_kernel_with_torch_scan() -> str | None:
    g = torch.Generator().manual_seed(0)
    b, length, d, n = 3, 2 * scan_kernel.SEGMENT + 5, 13, 4
    u, gy = torch.randn(b, length, d, generator=g), torch.randn(b, length, d, generator=g)
    delta = F.softplus(torch.randn(b, length, d, generator=g) - 1)
    At = -torch.rand(n, d, generator=g) - 0.5
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    D, z = torch.randn(d, generator=g), torch.randn(b, length, 2 * d, generator=g)[..., d:]  # z strided, as Mamba's
    paths = ((_ScanCore, _torch_gate), (scan_kernel.KernelScanCore, scan_kernel.KernelGate.apply))
    ref, ours = (outputs_and_gradients(lambda u, delta, At, B, C, D, z: gate(core.apply(u, delta, At, B, C), u, D, z),
                                       [u, delta, At, B, C, D, z], gy) for core, gate in paths)
    error = largest_relative_difference(ours, ref)
    if not error < 1e-4:
        return f"it disagrees with the PyTorch scan (largest relative difference {error:.1e})"
    # delta's softplus with its bias: a tail past float32's threshold, both signs, a partial channel block
    x = torch.cat([torch.randn(b, length, d, generator=g) * 4, torch.full((b, 1, d), 30.0)], 1)
    bias, gx = torch.randn(d, generator=g), torch.randn(b, length + 1, d, generator=g)
    ref, ours = (outputs_and_gradients(fn, [x, bias], gx) for fn in (_torch_softplus, scan_kernel.KernelSoftplus.apply))
    error = largest_relative_difference(ours, ref)
    if not error < 1e-5:
        return f"its softplus disagrees with F.softplus (largest relative difference {error:.1e})"
    return None


def conv_kernel_error() -> str | None:
    """None when the C causal convolution + SiLU kernel is built and agrees with ``causal_depthwise_conv1d``
    then ``F.silu`` (output and every gradient, strided input, a partial channel block, checked once per
    process), else why not."""
    return conv_kernel.KERNEL.checked_error(_compare_conv_kernel_with_torch)


def _compare_conv_kernel_with_torch() -> str | None:
    g = torch.Generator().manual_seed(0)
    b, length, e, k = 3, 13, 19, 4
    x = torch.randn(b, length, 2 * e, generator=g)[..., :e]  # strided, as Mamba's half of its projection
    weight, bias, gy = torch.randn(e, 1, k, generator=g), torch.randn(e, generator=g), torch.randn(b, length, e,
                                                                                                   generator=g)
    ours, ref = (outputs_and_gradients(fn, [x, weight, bias], gy) for fn in (conv_kernel.CausalConvSiLU.apply,
                                                                              _torch_conv_silu))
    error = largest_relative_difference(ours, ref)
    if not error < 1e-5:
        return f"it disagrees with causal_depthwise_conv1d and F.silu (largest relative difference {error:.1e})"
    return None


def causal_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.silu(causal_depthwise_conv1d(x, weight, bias))``, by the C kernel (``layers.conv_kernel``) for float32
    CPU tensors when it passed its first-call check (``conv_kernel_error``), else in PyTorch. Same arguments;
    returns ``[B, L, E]`` (the kernel's result differs by float32 rounding).

    A bfloat16 or float16 ``x`` with float32 weights (the block's projection under ``--bf16 1``'s autocast) is
    widened to float32 for the kernel and its result rounded back to ``x``'s dtype: forward + backward 20.5 ->
    7.9 ms against PyTorch's bf16 path (B 32, L 100, E 256, K 4, one AVX2 core), and computed in float32."""
    half = x.dtype in (torch.bfloat16, torch.float16)
    usable = (x.device.type == "cpu" and (x.dtype == torch.float32 or half) and weight.dtype == torch.float32
              and (x.stride(-1) == 1 or half) and (bias is None or bias.dtype == torch.float32)
              and weight.shape[-1] <= conv_kernel.MAX_WIDTH and conv_kernel_error() is None)
    if not usable:
        return _torch_conv_silu(x, weight, bias)
    if half:
        return conv_kernel.CausalConvSiLU.apply(x.float(), weight, bias).to(x.dtype)
    return conv_kernel.CausalConvSiLU.apply(x, weight, bias)


def _torch_conv_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    return F.silu(causal_depthwise_conv1d(x, weight, bias))


def causal_depthwise_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mamba's causal depthwise convolution over time, channels last: ``y_t = bias + sum_k w_k * x_{t-K+1+k}``.

    ``x [B, L, E]``, ``weight [E, 1, K]`` (``nn.Conv1d(E, E, K, groups=E)``'s layout), ``bias [E]`` or None
    -> ``[B, L, E]``, with zeros before the first step. Equals
    ``nn.Conv1d(E, E, K, groups=E, padding=K - 1)(x.mT)[..., :L].mT``. Computed as K multiply-adds of
    shifted views of ``x`` in the layout the block's projections use: the channels-first convolution
    needs a transposing copy each way, and PyTorch's CPU backward of a depthwise ``conv1d`` is slow
    (B 32, L 100, E 256, K 4 with the SiLU after it, forward + backward on one core of an AMD EPYC:
    28.6 ms channels first, 20.1 ms this way).
    """
    k, length = weight.shape[-1], x.shape[1]
    w = weight.reshape(-1, k)  # [E, K]
    padded = F.pad(x, (0, 0, k - 1, 0))  # [B, L + K - 1, E]
    y = padded[:, k - 1:] * w[:, k - 1] if bias is None else torch.addcmul(bias, padded[:, k - 1:], w[:, k - 1])
    for j in range(k - 1):  # in place: addcmul_ keeps only its multiplicands for the backward
        y.addcmul_(padded[:, j:j + length], w[:, j])
    return y


# --------------------------------------------------------------------------- CUDA backend (optional)

_CUDA_OPS: dict[str, Any] | None = None


def _load_cuda_ops() -> dict[str, Any]:
    """Import mamba_ssm's selective scan (and causal_conv1d if present) once.

    Returns a dict with ``scan`` (or None), ``conv`` (or None) and ``error``
    (why the scan is unavailable). Any exception is caught: a broken CUDA
    extension must not stop the torch backend from working.
    """
    global _CUDA_OPS
    if _CUDA_OPS is None:
        ops: dict[str, Any] = {"scan": None, "conv": None, "error": ""}
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
            ops["scan"] = selective_scan_fn
        except Exception as err:  # ImportError, or OSError from a mismatched build
            ops["error"] = f"{type(err).__name__}: {err}"
        try:
            from causal_conv1d import causal_conv1d_fn
            ops["conv"] = causal_conv1d_fn
        except Exception:
            pass
        _CUDA_OPS = ops
    return _CUDA_OPS


def cuda_ops_available() -> bool:
    """True when mamba_ssm's CUDA selective scan can be imported (says nothing about a GPU)."""
    return _load_cuda_ops()["scan"] is not None


# the CUDA kernels' limits (mamba_ssm's selective scan: d_state <= 256; causal_conv1d: width 2..4,
# channels in multiples of 8 for its vectorised loads)
MAX_CUDA_D_STATE = 256
CUDA_D_CONV = (2, 4)


def cuda_kernel_limits(d_model: int, d_conv: int, d_state: int) -> str | None:
    """Why mamba_ssm's CUDA kernels cannot run this block (None when they can), naming the flag and the fix."""
    problems = []
    if d_model % 8:
        problems.append(f"the width (--d_ssm) {d_model} is not divisible by 8")
    if not CUDA_D_CONV[0] <= d_conv <= CUDA_D_CONV[1]:
        problems.append(f"--d_conv {d_conv} is outside {CUDA_D_CONV[0]}..{CUDA_D_CONV[1]}")
    if d_state > MAX_CUDA_D_STATE:
        problems.append(f"--d_state {d_state} exceeds {MAX_CUDA_D_STATE}")
    if not problems:
        return None
    return ("mamba_ssm's CUDA kernels need a width divisible by 8, --d_conv 2..4 and --d_state <= 256, but "
            + "; ".join(problems))


_PROBED: dict[str, str | None] = {}  # device -> None (the kernels work there) or why they do not


def probe_cuda_ops(device: torch.device) -> str | None:
    """Run mamba_ssm's scan once on `device` (forward and backward) against ours; None if it agrees, else why not.

    A wheel built for another GPU architecture or CUDA version imports fine and fails on first use
    ("no kernel image is available"), so importing is not enough to trust it."""
    key = str(device)
    if key not in _PROBED:
        ops = _load_cuda_ops()
        if ops["scan"] is None:
            _PROBED[key] = ops["error"] or "mamba_ssm is not installed"
            return _PROBED[key]
        try:
            g = torch.Generator(device="cpu").manual_seed(0)
            b, d, n, length = 2, 16, 8, 33
            u, delta, z = (torch.randn(b, d, length, generator=g) for _ in range(3))
            A = -torch.rand(d, n, generator=g) - 0.5
            B, C = (torch.randn(b, n, length, generator=g) for _ in range(2))
            D, bias = torch.randn(d, generator=g), torch.randn(d, generator=g)
            args = [t.to(device).requires_grad_() for t in (u, delta, A, B, C, D)]
            kw = {"z": z.to(device), "delta_bias": bias.to(device), "delta_softplus": True}
            ours = selective_scan_torch(*[t.detach() for t in args], **kw)
            theirs = ops["scan"](*args, **kw)
            theirs.sum().backward()
            torch.cuda.synchronize(device)
            err = float((theirs.detach() - ours).abs().max())
            grads_ok = all(t.grad is not None and bool(torch.isfinite(t.grad).all()) for t in args)
            _PROBED[key] = None if err < 1e-3 and grads_ok else \
                f"its scan disagrees with ours (max difference {err:.2e}, finite gradients: {grads_ok})"
        except Exception as err:  # noqa: BLE001 - any failure means: do not use it
            _PROBED[key] = f"{type(err).__name__}: {err}"
    return _PROBED[key]


def _cuda_missing_message() -> str:
    return ("backend='cuda' needs the mamba_ssm CUDA kernels, which could not be imported "
            f"({_load_cuda_ops()['error']}); on a CUDA machine run `pip install -r requirements-cuda.txt`, "
            "or use backend='torch' (pure PyTorch, any device) or 'auto'")


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        print(message)


# --------------------------------------------------------------------------- modules


class Mamba(nn.Module):
    """The Mamba block of Gu & Dao (2023, Fig. 3): in_proj -> causal depthwise conv -> SiLU ->
    selective SSM, gated by SiLU(z) -> out_proj.

    Parameter names and shapes equal ``mamba_ssm.modules.mamba_simple.Mamba``
    (``in_proj.weight [2E, d]``, ``conv1d.weight [E, 1, d_conv]``, ``conv1d.bias [E]``,
    ``x_proj.weight [R + 2N, E]``, ``dt_proj.weight [E, R]``, ``dt_proj.bias [E]``,
    ``A_log [E, N]``, ``D [E]``, ``out_proj.weight [d, E]``, with ``E = expand * d``,
    ``R = dt_rank``), so one checkpoint serves both backends.

    Initialisation, following the paper: ``A = -[1..N]`` per channel
    (stored as ``A_log = log([1..N])``, S4D-real), ``D = 1``, ``dt_proj.bias =
    softplus^{-1}(dt)`` with ``dt`` log-uniform in ``[dt_min, dt_max]`` (floored
    at ``dt_init_floor``), ``dt_proj.weight ~ U(-R^-0.5, R^-0.5)``.

    Args:
        backend: "auto" (mamba_ssm CUDA scan when importable and the input is on
            CUDA; on the CPU our C kernel, ``selective_scan_cpu``; else our PyTorch
            scan), "cuda" (require mamba_ssm), "torch" (always our PyTorch scan).
            ``backend_used`` says which ran last: "mamba_ssm", "cpu_kernel" or "torch".
    forward: ``x [B, L, d_model] -> [B, L, d_model]``; causal in time.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 backend: str = "auto") -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Mamba: {name} must be a positive integer, got {value!r}")
        if backend not in BACKENDS:
            raise ValueError(f"Mamba: backend must be one of {BACKENDS}, got {backend!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self._limits = cuda_kernel_limits(d_model, d_conv, d_state)
        if backend == "cuda" and self._limits:
            raise ValueError(f"{self._limits}; change those flags or use --ssm_backend auto/torch")
        if backend == "cuda" and not cuda_ops_available():
            raise RuntimeError(_cuda_missing_message())
        self.backend_used: str | None = None  # "mamba_ssm", "cpu_kernel" or "torch", set on each forward
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        if self.dt_rank < 1:
            raise ValueError(f"Mamba: dt_rank must be 'auto' or a positive integer, got {dt_rank!r}")
        self.backend = backend

        e, n, r = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * e, bias=bias)
        self.conv1d = nn.Conv1d(e, e, kernel_size=d_conv, groups=e, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(e, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, e, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(e, 1))  # [E, N]
        self.D = nn.Parameter(torch.ones(e))
        self.out_proj = nn.Linear(e, d_model, bias=bias)
        # optimisers may read these flags to exclude them from weight decay / re-initialisation
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        # inverse of softplus: softplus(dt + log(1 - exp(-dt))) = dt
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    def _use_cuda(self, x: torch.Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "cuda":
            if not x.is_cuda:
                raise RuntimeError("Mamba(backend='cuda') got an input on "
                                   f"{x.device}; move the model and data to CUDA or use backend='auto'")
            return True
        if not (x.is_cuda and cuda_ops_available()):
            return False
        if self._limits:
            _warn_once(f"Mamba: {self._limits}; using the PyTorch scan instead (--ssm_backend torch hides this)")
            return False
        why = probe_cuda_ops(x.device)
        if why:
            _warn_once(f"Mamba: mamba_ssm's CUDA kernels failed their first-call check on {x.device} ({why}); "
                       f"using the PyTorch scan instead (reinstall them for this GPU: pip install -r "
                       f"requirements-cuda.txt --no-build-isolation)")
            return False
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"Mamba expects [batch, length, d_model={self.d_model}], got {tuple(x.shape)}")
        use_cuda = self._use_cuda(x)
        use_kernel = (not use_cuda and self.backend == "auto" and x.device.type == "cpu"
                      and x.dtype in (torch.float32, torch.bfloat16, torch.float16) and cpu_kernel_error() is None)
        self.backend_used = "mamba_ssm" if use_cuda else "cpu_kernel" if use_kernel else "torch"
        ops = _load_cuda_ops() if use_cuda else None
        xz = self.in_proj(x)  # [B, L, 2E]
        xs, z = xz.chunk(2, dim=-1)  # [B, L, E] each
        if use_cuda and ops["conv"] is not None:  # the kernel takes [B, E, L]
            xs = ops["conv"](xs.mT, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu").mT
        else:
            conv = causal_conv_silu if use_kernel else _torch_conv_silu
            xs = conv(xs, self.conv1d.weight, self.conv1d.bias)  # [B, L, E]
        x_dbl = self.x_proj(xs)  # [B, L, R + 2N]
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = linear(dt, self.dt_proj.weight)  # [B, L, E]; the bias goes in as delta_bias; R inputs: fast_ops.linear
        A = -torch.exp(self.A_log.float())  # [E, N]
        # scan inputs: u, delta, z [B, E, L]; B, C [B, N, L] (transposed views: the torch scan works in [B, L, *])
        u, delta, B, C, z = xs.mT, dt.mT, B.mT, C.mT, z.mT
        if use_cuda:  # the CUDA kernel wants unit stride along time
            u, delta, B, C, z = (t.contiguous() for t in (u, delta, B, C, z))
        scan: Callable[..., torch.Tensor] = (ops["scan"] if use_cuda else selective_scan_cpu if use_kernel
                                             else selective_scan_torch)
        y = scan(u, delta, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.mT)  # [B, L, d_model]


class MambaStack(nn.Module):
    """``n_layers`` pre-norm residual Mamba blocks, then a final LayerNorm.

    Each block computes ``x + Mamba(LayerNorm(x))`` (the residual layout of the
    Mamba language models, Gu & Dao 2023). Parameters are named
    ``layers.<i>.norm``, ``layers.<i>.mixer`` (a ``Mamba``) and ``norm_f``.
    forward: ``[B, L, d_model] -> [B, L, d_model]``.
    """

    def __init__(self, d_model: int, n_layers: int = 1, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"MambaStack: n_layers must be a positive integer, got {n_layers!r}")
        self.layers = nn.ModuleList(_Block(d_model, d_state, d_conv, expand, backend) for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm_f(x)


class _Block(nn.Module):
    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, backend: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))

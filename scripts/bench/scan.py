"""Benchmark of the selective scan: `python -m scripts.bench scan [options]`.

Compares, on the same inputs and side by side in one run:

- ``torch (ours)``: ``layers.mamba.selective_scan_torch``;
- ``C kernel (ours)``: ``layers.mamba.selective_scan_cpu`` (the compiled CPU kernel of
  ``layers.scan_kernel``; CPU only, shown when it builds);
- ``mambapy.pscan``: the mambapy package's selective-scan path
  (``mambapy.mamba.MambaBlock.selective_scan``, which forms ``exp(delta A)``
  and ``delta B u`` and calls the Blelloch parallel scan ``mambapy.pscan``),
  wrapped with the same softplus(delta + bias) in front and ``* silu(z)``
  behind, exactly as ``mambapy.mamba.MambaBlock`` does around it;
- ``reference loop`` (``--ref``): ``layers.mamba.selective_scan_ref``;
- ``mamba_ssm (CUDA)``: ``selective_scan_fn`` when importable and ``--device cuda``.

Inputs are created in the ``[B, L, *]`` layout that the linear layers of a
Mamba block produce; mambapy gets them as they are (its native layout), ours
and mamba_ssm get ``[B, *, L]`` transposed views, as their modules pass them.
Every implementation's output is checked against ours (``max|dy|``).

Reported: median wall time of the forward pass (no grad), of forward +
backward (all inputs require grad, as in training), and the ratio of each to
mambapy's (``> 1`` means faster than mambapy). ``bf16`` rows feed bfloat16
activations (as an autocast ``in_proj`` would) and run inside
``torch.autocast``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from layers.mamba import (cpu_kernel_error, cuda_ops_available, selective_scan_cpu, selective_scan_ref,
                          selective_scan_torch)

ScanFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=100)
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--expand", type=int, default=2, help="d_inner = expand * d_model")
    parser.add_argument("--d_state", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", default=None,
                        help="comma list of fp32,bf16 (default: fp32 on CPU, fp32,bf16 on CUDA)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--ref", action="store_true", help="also time the step-by-step reference loop (slow)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")
    parser.add_argument("--seed", type=int, default=0)


def _inputs(args: argparse.Namespace, act_dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Scan inputs in the layout a Mamba block produces them: activations [B, L, *]."""
    g = torch.Generator().manual_seed(args.seed)
    b, length, e, n = args.batch, args.seq_len, args.expand * args.d_model, args.d_state
    dev = torch.device(args.device)

    def act(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(device=dev, dtype=act_dtype)

    return {
        "u": act(b, length, e), "delta": act(b, length, e, scale=0.5), "z": act(b, length, e),
        "B": act(b, length, n), "C": act(b, length, n),
        # parameters stay float32, as in the module (A = -exp(A_log.float()))
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(e, 1).to(dev),
        "D": torch.ones(e, device=dev),
        "delta_bias": (torch.rand(e, generator=g) * 2 - 4).to(dev),  # softplus^-1 of dt in ~[0.02, 0.13]
    }


def _ours(x: dict[str, torch.Tensor]) -> torch.Tensor:
    t = lambda v: v.transpose(1, 2)  # noqa: E731  [B, L, *] -> [B, *, L] view
    y = selective_scan_torch(t(x["u"]), t(x["delta"]), x["A"], t(x["B"]), t(x["C"]), x["D"], z=t(x["z"]),
                             delta_bias=x["delta_bias"], delta_softplus=True)
    return y.transpose(1, 2)  # [B, L, E]


def _kernel(x: dict[str, torch.Tensor]) -> torch.Tensor:
    t = lambda v: v.transpose(1, 2)  # noqa: E731
    y = selective_scan_cpu(t(x["u"]), t(x["delta"]), x["A"], t(x["B"]), t(x["C"]), x["D"], z=t(x["z"]),
                           delta_bias=x["delta_bias"], delta_softplus=True)
    return y.transpose(1, 2)


def _reference(x: dict[str, torch.Tensor]) -> torch.Tensor:
    t = lambda v: v.transpose(1, 2)  # noqa: E731
    y = selective_scan_ref(t(x["u"]), t(x["delta"]), x["A"], t(x["B"]), t(x["C"]), x["D"], z=t(x["z"]),
                           delta_bias=x["delta_bias"], delta_softplus=True)
    return y.transpose(1, 2)


def _mambapy(x: dict[str, torch.Tensor]) -> torch.Tensor:
    from mambapy.mamba import MambaBlock

    # what mambapy.mamba.MambaBlock.ssm/forward do around selective_scan (pscan=True path)
    delta = F.softplus(x["delta"] + x["delta_bias"])  # [B, L, E]
    # selective_scan uses no attribute of self; call it unbound on the same tensors
    y = MambaBlock.selective_scan(None, x["u"], delta, x["A"], x["B"], x["C"], x["D"])
    return y * F.silu(x["z"])


def _mamba_ssm(x: dict[str, torch.Tensor]) -> torch.Tensor:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    t = lambda v: v.transpose(1, 2)  # noqa: E731
    y = selective_scan_fn(t(x["u"]), t(x["delta"]), x["A"], t(x["B"]), t(x["C"]), x["D"], z=t(x["z"]),
                          delta_bias=x["delta_bias"], delta_softplus=True)
    return y.transpose(1, 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median milliseconds of `fn` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _bench_one(fn: ScanFn, x: dict[str, torch.Tensor], args: argparse.Namespace,
               autocast: bool) -> tuple[float, float, torch.Tensor]:
    device = torch.device(args.device)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()}
    gy = torch.randn(x["u"].shape, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=x["u"].dtype)
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast else torch.enable_grad

    def forward() -> torch.Tensor:
        with torch.no_grad(), ctx():
            return fn(x)

    def forward_backward() -> None:
        with ctx():
            y = fn(leaves)
        y.backward(gy.to(y.dtype))

    fwd = median_ms(forward, device, args.warmup, args.repeats)
    fwd_bwd = median_ms(forward_backward, device, args.warmup, args.repeats)
    return fwd, fwd_bwd, forward().float()


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    dtypes = (args.dtypes or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(",")
    impls: list[tuple[str, ScanFn]] = [("torch (ours)", _ours)]
    if device.type == "cpu":
        why = cpu_kernel_error()
        if why is None:
            impls.append(("C kernel (ours)", _kernel))
        else:
            print(f"no C kernel row: {why}")
    try:
        import mambapy.pscan  # noqa: F401
        impls.append(("mambapy.pscan", _mambapy))
    except ImportError:
        print("mambapy not installed: no mambapy row (pip install mambapy)")
    if args.ref:
        impls.append(("reference loop", _reference))
    if device.type == "cuda" and cuda_ops_available():
        impls.append(("mamba_ssm (CUDA)", _mamba_ssm))

    e = args.expand * args.d_model
    print(f"selective scan: B={args.batch} L={args.seq_len} d_model={args.d_model} d_inner={e} "
          f"d_state={args.d_state} device={device} threads={torch.get_num_threads()} "
          f"warmup={args.warmup} repeats={args.repeats} (median ms)")
    header = f"{'implementation':<18} {'dtype':<5} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd x':>7} {'fwd+bwd x':>10} {'max|dy|':>9}"
    print(header)
    print("-" * len(header))
    for dt_name in dtypes:
        if dt_name not in ("fp32", "bf16"):
            raise SystemExit(f"--dtypes: unknown {dt_name!r}; use fp32 and/or bf16")
        autocast = dt_name == "bf16"
        x = _inputs(args, torch.bfloat16 if autocast else torch.float32)
        rows = [(name, *_bench_one(fn, x, args, autocast)) for name, fn in impls]
        base = {name: (f, fb) for name, f, fb, _ in rows}.get("mambapy.pscan")
        y_ours = rows[0][3]
        for name, f, fb, y in rows:
            rf = f"{base[0] / f:6.2f}x" if base else "   n/a"
            rfb = f"{base[1] / fb:9.2f}x" if base else "      n/a"
            print(f"{name:<18} {dt_name:<5} {f:9.2f} {fb:11.2f} {rf:>7} {rfb:>10} {(y - y_ours).abs().max().item():9.1e}")
    print("x = speed-up relative to mambapy.pscan (mambapy time / this time); max|dy| = vs our output")
    return 0

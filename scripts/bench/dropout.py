"""Benchmark of dropout on the CPU: `python -m scripts.bench dropout [options]`.

Compares, on the same input and side by side in one run, for each shape:

- ``F.dropout``: PyTorch's (``bernoulli_`` mask, multiply);
- ``numpy Philox``: ``layers.fast_ops.dropout`` without the C kernel (bits from ``numpy.random.Philox``,
  an integer mask tensor, a multiply each way);
- ``C kernel``: ``layers.fast_ops.dropout`` with ``csrc/dropout.c`` (the same bits drawn and applied in one
  pass, a byte per element kept for the backward); shown when it builds.

Reported: the median wall time of the forward (input requiring grad, as in training, so the mask is kept)
and of forward + backward, and each one's speed-up over ``F.dropout``. The default shapes are those of the
quickstart and paper steps' largest dropouts: the LoRA inputs and residual streams ``[3200, 384]`` and
``[3200, 1536]`` (MiniLM), ``[3200, 3072]`` (GPT-2's ``c_proj`` LoRA input), attention weights
``[384, 100, 100]`` and the memory retrieval's ``[8, 3200, 384]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from layers import fast_ops

DEFAULT_SHAPES = "3200x384,3200x1536,3200x3072,384x100x100,8x3200x384"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def dtype_list(text: str) -> list[str]:
    """``--dtypes``' value (a comma list of ``DTYPES``' names) as a list; an unknown name is argparse's error
    (exit status 2), naming it and the choices."""
    names = text.split(",")
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)} in {text!r}; choose from {', '.join(DTYPES)}")
    return names


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of shapes such as 3200x384")
    parser.add_argument("--p", type=float, default=0.1, help="drop probability")
    parser.add_argument("--dtypes", type=dtype_list, default="fp32", help="comma list of " + ",".join(DTYPES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def forward_backward_ms(impls: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                        grad: torch.Tensor, warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """For each implementation ``fn``, the median ms of ``fn(x)`` and of ``fn(x).backward(grad)``, in order."""
    rows = {}
    for name, fn in impls.items():
        rows[name] = (median_ms(lambda: fn(x), warmup, repeats), median_ms(lambda: fn(x).backward(grad), warmup,
                                                                            repeats))
    return rows


def speed_lines(label: str, rows: dict[str, tuple[float, float]], base: str) -> list[str]:
    """One table line per implementation: ``label``, name, forward and forward + backward ms, and each one's
    speed-up over the implementation ``base``."""
    ref = rows[base]
    return [f"{label}{name:<16}{forward:>9.2f}{both:>12.2f}{ref[0] / forward:>8.2f}{ref[1] / both:>11.2f}"
            for name, (forward, both) in rows.items()]


def _ours(use_kernel: bool) -> Callable[[torch.Tensor, float], torch.Tensor]:
    return lambda x, p: fast_ops._KeepScale.apply(x, p, fast_ops._draw_seed(), use_kernel)


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    why = fast_ops.kernel_error()
    impls: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
        "F.dropout": lambda x, p: F.dropout(x, p, True), "numpy Philox": _ours(False)}
    if why is None:
        impls["C kernel"] = _ours(True)
    print(f"dropout benchmark: p={args.p}; threads {torch.get_num_threads()}; median of {args.repeats}; "
          f"C kernel: {'built' if why is None else f'not available ({why})'}")
    print(f"{'shape':<16}{'dtype':<6}{'implementation':<16}{'fwd ms':>9}{'fwd+bwd ms':>12}"
          f"{'fwd x':>8}{'fwd+bwd x':>11}")
    for shape_text in args.shapes.split(","):
        shape = tuple(int(s) for s in shape_text.lower().split("x"))
        for dtype_name in args.dtypes:
            x = torch.randn(shape).to(DTYPES[dtype_name]).requires_grad_()
            grad = torch.randn(shape).to(DTYPES[dtype_name])
            with_p = {name: (lambda x, fn=fn: fn(x, args.p)) for name, fn in impls.items()}
            rows = forward_backward_ms(with_p, x, grad, args.warmup, args.repeats)
            print("\n".join(speed_lines(f"{shape_text:<16}{dtype_name:<6}", rows, "F.dropout")))
    print("x = F.dropout's time / this one's (> 1: faster)")
    return 0

"""Benchmark of GELU on the CPU, both forms: `python -m scripts.bench gelu [options]`.

Compares, on the same input and side by side in one run, for each shape:

- ``F.gelu tanh``: PyTorch's ``F.gelu(x, approximate="tanh")`` (GPT-2's activation as transformers runs it);
- ``C kernel tanh``: ``layers.fast_ops.gelu_tanh`` with ``csrc/gelu.c`` (the same function as ``x sigmoid(2u)``
  with a vectorised exp, one pass each way); shown when it builds;
- ``F.gelu erf``: PyTorch's erf form (BERT's and MiniLM's activation; a different function);
- ``C kernel erf``: ``layers.fast_ops.gelu_erf``, the erf form by the same kernel file; shown when it builds.

Reported: the median wall time of the forward (input requiring grad, as in training) and of forward +
backward, and each one's speed-up over PyTorch's own of the same form and dtype. Default shapes: the MLP
activations of the paper step (GPT-2, ``[3200, 3072]``) and the quickstart step (MiniLM, ``[3200, 1536]``);
default dtypes fp32 and bf16 (what GELU gets under ``--bf16 1``'s autocast: the bf16 output of the MLP's first
product).
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch
import torch.nn.functional as F

from layers import fast_ops
from scripts.bench.dropout import DTYPES, dtype_list, forward_backward_ms, speed_lines

DEFAULT_SHAPES = "3200x3072,3200x1536"


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of shapes such as 3200x3072")
    parser.add_argument("--dtypes", type=dtype_list, default="fp32,bf16", help="comma list of " + ",".join(DTYPES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    why = fast_ops.gelu_kernel_error()
    forms: dict[str, dict[str, Callable[[torch.Tensor], torch.Tensor]]] = {
        "tanh": {"F.gelu tanh": lambda x: F.gelu(x, approximate="tanh")}, "erf": {"F.gelu erf": F.gelu}}
    if why is None:
        forms["tanh"]["C kernel tanh"] = lambda x: fast_ops._Gelu.apply(x, "tanh")
        forms["erf"]["C kernel erf"] = lambda x: fast_ops._Gelu.apply(x, "none")
    print(f"GELU benchmark; threads {torch.get_num_threads()}; median of {args.repeats}; "
          f"C kernel: {'built' if why is None else f'not available ({why})'}")
    print(f"{'shape':<16}{'dtype':<6}{'implementation':<16}{'fwd ms':>9}{'fwd+bwd ms':>12}{'fwd x':>8}"
          f"{'fwd+bwd x':>11}")
    for shape_text in args.shapes.split(","):
        shape = tuple(int(s) for s in shape_text.lower().split("x"))
        for dtype_name in args.dtypes:
            x = torch.randn(shape).to(DTYPES[dtype_name]).requires_grad_()
            grad = torch.randn(shape).to(DTYPES[dtype_name])
            for form, impls in forms.items():
                rows = forward_backward_ms(impls, x, grad, args.warmup, args.repeats)
                print("\n".join(speed_lines(f"{shape_text:<16}{dtype_name:<6}", rows, f"F.gelu {form}")))
    print("x = PyTorch's time for the same form (F.gelu tanh or erf) and dtype / this one's (> 1: faster)")
    return 0

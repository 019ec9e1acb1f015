"""Benchmarks that print tables: `python -m scripts.bench {scan,dropout,gelu,model,ab,metrics,memory,gpu} [options]`.

They sit above the code they measure (they import run.py, models/, layers/ and utils/), outside the
library. Each benchmark lives in its own module (`scripts/bench/<name>.py`) exposing
`add_args(parser)` and `main(args)`. Speed is compared side by side in one
run (ratios), since the machine may be shared and noisy; nothing here is a test.
"""
from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "scan": ("scripts.bench.scan", "selective scan: our PyTorch scan and C kernel vs mambapy (and mamba_ssm on CUDA)"),
    "dropout": ("scripts.bench.dropout", "CPU dropout: our C kernel and numpy path vs F.dropout"),
    "gelu": ("scripts.bench.gelu", "CPU GELU, tanh (GPT-2's) and erf (BERT's) forms: our C kernel vs F.gelu"),
    "model": ("scripts.bench.model", "CrossAlign train/inference step vs a plain GPT2Model"),
    "ab": ("scripts.bench.ab", "this checkout's model benchmark against another checkout's, taking turns"),
    "metrics": ("scripts.bench.metrics", "full evaluation suite on a long synthetic series"),
    "gpu": ("scripts.bench.gpu", "CrossAlign train/inference throughput and peak memory at batch 32/128, fp32/bf16"),
    "memory": ("scripts.bench.memory", "peak memory training and scoring a long .npy series on disk"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="name", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_args(sp)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            sp.set_defaults(_missing=True)
    args = parser.parse_args(argv)
    if getattr(args, "_missing", False):
        parser.error(f"benchmark {args.name!r} is not available ({args._module} missing)")
    from utils.allocator import keep_large_blocks
    keep_large_blocks()  # as run.py does, so the benchmarks time what training runs do
    return importlib.import_module(args._module).main(args) or 0


if __name__ == "__main__":
    sys.exit(main())

"""One side of ``python -m scripts.bench ab``: a model benchmark runner that steps when told to.

Run as a script with the checkout to measure as the working directory; the
model code (``scripts.bench.model``'s ``_setup``, ``models/``, ``layers/``) is
imported from that checkout, this protocol from ours. It applies the
checkout's own allocator policy (``utils.allocator.keep_large_blocks``) when it
has one, as that checkout's ``run.py`` does. Commands arrive on stdin, one JSON
list per line; each answer is one JSON line on the original stdout (everything
the libraries print goes to stderr):

- ``["train", i]`` / ``["infer", i]``: seconds of one training step / inference pass of configuration ``i``;
- ``["flops", i]``: matmul FLOPs of one training step and of one inference pass of configuration ``i``;
- ``["gemm", i]``: this machine's GEMM rates for configuration ``i``'s block shape (GFLOP/s, fp32 and bf16,
  training pass and forward alone);
- ``["quit"]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    sys.path[0] = os.getcwd()  # the measured checkout's packages, not this file's folder
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library output (model summaries, warnings) must not mix with the answers

    try:
        from utils.allocator import keep_large_blocks
        keep_large_blocks()
    except ImportError:  # a checkout from before the allocator setting: glibc's default, as its run.py had
        pass
    from scripts.bench import model as bm

    parser = argparse.ArgumentParser()
    bm.add_args(parser)
    args = bm.apply_setting(parser.parse_args(sys.argv[1:]))
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    runners = bm._setup(bm._runs(names, [args.llm]), args)
    protocol.write(json.dumps({"ready": [r.name for r in runners]}) + "\n")

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd[0] == "quit":
            break
        r = runners[cmd[1]]
        if cmd[0] == "train":
            answer = r.train_step()
        elif cmd[0] == "infer":
            answer = r.infer()
        elif cmd[0] == "flops":
            answer = {"train": sum(bm.count_flops(r.step).values()), "infer": sum(bm.count_flops(r.infer).values())}
        elif cmd[0] == "gemm":
            prec = "bf16" if r.bf16 else "fp32"  # the configuration's own precision only
            xwg = bm.gemm_operands(args.batch_size * args.seq_len, *bm.block_dims(r.model), (prec,))[prec]
            answer = {prec: {"train": bm.gemm_rate(xwg), "forward": bm.gemm_forward_rate(xwg)}}
        else:
            raise ValueError(f"unknown command {cmd!r}")
        protocol.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

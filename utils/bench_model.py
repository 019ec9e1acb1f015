"""Benchmark of a training step: `python -m utils.benchmark model [options]`.

Side by side in one run, on the same batch ``x [B, L, C]`` (default B=32,
L=100, C=38, the issue's setting):

- ``CrossAlign fp32`` / ``CrossAlign bf16``: the model as ``run.py`` builds
  it (``--llm gpt2 --llm_init random`` by default: GPT-2 small's architecture,
  no download; ``--llm_layers 6``; every other flag at its run.py default),
  the bf16 row inside ``torch.autocast(bfloat16)`` as ``--bf16 1`` trains;
- ``GPT2Model fp32``: a plain ``transformers.GPT2Model`` with 6 layers (GPT-2
  small's configuration otherwise), every weight trainable, between a
  ``Linear C->768`` and a ``Linear 768->C``, fp32 (the issue's reference);
- ``GPT2Model bf16`` (``--configs`` default includes it): the same under
  autocast, to show how much of any speed-up is bf16 alone.

A training step = zero_grad, forward, MSE reconstruction loss (+ the model's
auxiliary loss), backward, ``torch.optim.Adam`` step over the trainable
parameters: what ``exp/`` does per batch. Inference = forward in eval mode
under ``torch.no_grad()``.

Each configuration runs in its own fresh Python process, one after another
(``--repeats`` rounds, interleaved), so the peak resident memory
(``ru_maxrss``) belongs to that configuration alone; we report the peak and
its growth during the timed steps (activations, gradients, optimiser state).
Times are medians over ``--steps`` steps after ``--warmup`` steps; with
several rounds, the best round's median. The machine may be shared: compare
the ratios within one run, not absolute numbers across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

CONFIGS = {
    "crossalign_fp32": ("CrossAlign", False),
    "crossalign_bf16": ("CrossAlign", True),
    "gpt2_fp32": ("GPT2Model", False),
    "gpt2_bf16": ("GPT2Model", True),
}
_REFERENCE = "gpt2_fp32"
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=100)
    parser.add_argument("--channels", type=int, default=38)
    parser.add_argument("--llm", default="gpt2")
    parser.add_argument("--llm_init", default="random", choices=("pretrained", "random"))
    parser.add_argument("--llm_layers", type=int, default=6, help="CrossAlign's LLM blocks and the plain GPT2Model's")
    parser.add_argument("--model_flags", default="",
                        help="extra run.py flags for CrossAlign, e.g. \"--pmd_rounds 2 --ssm_layers 1\"")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--infer_steps", type=int, default=5, help="timed inference passes")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the best median counts")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build(kind: str, args: argparse.Namespace):
    import torch.nn as nn

    if kind == "CrossAlign":
        import run
        from models.CrossAlign import Model
        flags = ["--llm", args.llm, "--llm_init", args.llm_init, "--llm_layers", str(args.llm_layers)]
        margs = run.build_parser().parse_args(flags + args.model_flags.split())
        margs.enc_in, margs.seq_len = args.channels, args.seq_len
        return Model(margs)

    from transformers import GPT2Config, GPT2Model

    class PlainGPT2(nn.Module):
        """Linear C->768, GPT2Model (all weights trainable), Linear 768->C."""

        def __init__(self) -> None:
            super().__init__()
            cfg = GPT2Config(n_layer=args.llm_layers)
            self.inp = nn.Linear(args.channels, cfg.n_embd)
            self.gpt2 = GPT2Model(cfg)  # SDPA attention, transformers' default
            self.out = nn.Linear(cfg.n_embd, args.channels)

        def forward(self, x):
            return self.out(self.gpt2(inputs_embeds=self.inp(x)).last_hidden_state)

    return PlainGPT2()


def _measure(name: str, args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    kind, bf16 = CONFIGS[name]
    torch.manual_seed(0)
    model = _build(kind, args)
    x = torch.randn(args.batch_size, args.seq_len, args.channels)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = model(x)
        out, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.mse_loss(out.float(), x)
        if aux is not None:
            loss = loss + aux.float()
        loss.backward()
        opt.step()

    model.train()
    rss_built = _rss_mib()
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        train_step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    rss_train = _rss_mib()
    model.eval()
    infer = []
    with torch.no_grad():
        for i in range(1 + args.infer_steps):
            t0 = time.perf_counter()
            with autocast():
                model(x)
            if i >= 1:
                infer.append(time.perf_counter() - t0)
    step = statistics.median(times)
    inf = statistics.median(infer)
    return {"config": name, "model": kind, "bf16": bf16, "train_ms": 1e3 * step, "train_ms_min": 1e3 * min(times),
            "train_windows_s": args.batch_size / step, "infer_ms": 1e3 * inf, "infer_windows_s": args.batch_size / inf,
            "rss_built_mib": rss_built, "rss_peak_mib": max(rss_train, _rss_mib()),
            "rss_train_growth_mib": rss_train - rss_built,
            "trainable_params": sum(p.numel() for p in params), "total_params": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads()}


def _run_worker(name: str, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "utils.benchmark", "model", *argv, "--_worker", name]
    proc = subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(results: list[dict]) -> str:
    ref = next((r for r in results if r["config"] == _REFERENCE), None)
    head = (f"{'configuration':<18}{'train ms/step':>14}{'train win/s':>12}{'infer ms':>10}{'infer win/s':>12}"
            f"{'peak RSS MiB':>13}{'+train MiB':>11}{'trainable':>13}{'total':>13}{'train x':>9}{'infer x':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        label = f"{r['model']} {'bf16' if r['bf16'] else 'fp32'}"
        tx = f"{ref['train_ms'] / r['train_ms']:.2f}" if ref else "-"
        ix = f"{ref['infer_ms'] / r['infer_ms']:.2f}" if ref else "-"
        lines.append(f"{label:<18}{r['train_ms']:>14.0f}{r['train_windows_s']:>12.1f}{r['infer_ms']:>10.0f}"
                     f"{r['infer_windows_s']:>12.1f}{r['rss_peak_mib']:>13.0f}{r['rss_train_growth_mib']:>11.0f}"
                     f"{r['trainable_params']:>13,}{r['total_params']:>13,}{tx:>9}{ix:>9}")
    if ref:
        lines.append(f"train x / infer x: speed relative to {ref['model']} fp32 (> 1 = faster)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args._worker:
        print(json.dumps(_measure(args._worker, args)))
        return 0
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; choose from {', '.join(CONFIGS)}")
    argv = [f"--batch_size={args.batch_size}", f"--seq_len={args.seq_len}", f"--channels={args.channels}",
            f"--llm={args.llm}", f"--llm_init={args.llm_init}", f"--llm_layers={args.llm_layers}",
            f"--model_flags={args.model_flags}", f"--warmup={args.warmup}", f"--steps={args.steps}",
            f"--infer_steps={args.infer_steps}"] + ([f"--threads={args.threads}"] if args.threads else [])
    print(f"model benchmark: B={args.batch_size} L={args.seq_len} C={args.channels}, {args.llm_layers} LLM layers, "
          f"CrossAlign --llm {args.llm} --llm_init {args.llm_init} {args.model_flags}; "
          f"{args.warmup} warm-up + {args.steps} timed steps, {args.repeats} round(s), one process per configuration")
    best: dict[str, dict] = {}
    for round_ in range(args.repeats):
        for name in names:
            r = _run_worker(name, argv)
            print(f"  round {round_ + 1} {name}: train {r['train_ms']:.0f} ms/step, infer {r['infer_ms']:.0f} ms, "
                  f"peak RSS {r['rss_peak_mib']:.0f} MiB", flush=True)
            if name not in best or r["train_ms"] < best[name]["train_ms"]:
                best[name] = r
    results = [best[n] for n in names]
    print(_table(results))
    if args.json:
        from utils.io import save_json
        save_json(args.json, {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                              "results": results})
    return 0

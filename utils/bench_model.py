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

Timing: one process builds both models and runs the configurations
*interleaved* (step 1 of every configuration, then step 2 of every one, ...),
so that load from other users of a shared machine hits all of them alike;
we report medians over ``--steps`` steps after ``--warmup`` steps. Memory:
each configuration then runs a few steps in its own fresh process, so that its
peak resident memory (``ru_maxrss``) is its own; we report the peak and its
growth during training (activations, gradients, optimiser state). Compare the
ratios within one run; absolute numbers move with the machine's load, which
is printed before and after.
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
    parser.add_argument("--llm", default="gpt2",
                        help="CrossAlign backbone; a comma list (e.g. minilm,smollm2) times each side by side")
    parser.add_argument("--llm_init", default="random", choices=("pretrained", "random"))
    parser.add_argument("--llm_layers", type=int, default=6, help="CrossAlign's LLM blocks and the plain GPT2Model's")
    parser.add_argument("--model_flags", default="",
                        help="extra run.py flags for CrossAlign, e.g. \"--pmd_rounds 2 --ssm_layers 1\"")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--infer_steps", type=int, default=5, help="timed inference passes")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build(kind: str, args: argparse.Namespace, llm: str):
    import torch.nn as nn

    if kind == "CrossAlign":
        import run
        from models.CrossAlign import Model
        flags = ["--llm", llm, "--llm_init", args.llm_init, "--llm_layers", str(args.llm_layers)]
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


class _Runner:
    """One configuration's model, optimiser and batch; ``train_step()``/``infer()`` return seconds."""

    def __init__(self, name: str, llm: str | None, model, x) -> None:
        import torch
        config = name.split("@")[0]
        self.name, self.llm, (self.kind, self.bf16) = name, llm, CONFIGS[config]
        self.model, self.x = model, x
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=1e-4)

    def _autocast(self):
        import torch
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def train_step(self) -> float:
        import torch.nn.functional as F
        self.model.train()
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.model(self.x)
        out, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.mse_loss(out.float(), self.x)
        if aux is not None:
            loss = loss + aux.float()
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0

    def infer(self) -> float:
        import torch
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad(), self._autocast():
            self.model(self.x)
        return time.perf_counter() - t0


def _runs(names: list[str], llms: list[str]) -> list[tuple[str, str | None]]:
    """(run name, backbone) pairs: a CrossAlign configuration once per backbone (``config@llm`` if several)."""
    out = []
    for name in names:
        if CONFIGS[name][0] != "CrossAlign":
            out.append((name, None))
        else:
            out += [(name if len(llms) == 1 else f"{name}@{llm}", llm) for llm in llms]
    return out


def _setup(runs: list[tuple[str, str | None]], args: argparse.Namespace) -> list[_Runner]:
    """Runners; configurations of the same model share one instance (precision is a runtime choice)."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.seq_len, args.channels)
    models: dict[tuple, object] = {}
    runners = []
    for name, llm in runs:
        key = (CONFIGS[name.split("@")[0]][0], llm)
        if key not in models:
            torch.manual_seed(0)
            models[key] = _build(key[0], args, llm)
        runners.append(_Runner(name, llm, models[key], x))
    return runners


def _timing(runs: list[tuple[str, str | None]], args: argparse.Namespace) -> dict:
    import torch
    runners = _setup(runs, args)
    train = {r.name: [] for r in runners}
    infer = {r.name: [] for r in runners}
    for i in range(args.warmup + args.steps):
        for r in runners:
            dt = r.train_step()
            if i >= args.warmup:
                train[r.name].append(dt)
    for i in range(1 + args.infer_steps):
        for r in runners:
            dt = r.infer()
            if i >= 1:
                infer[r.name].append(dt)
    out = {}
    for r in runners:
        step, inf = statistics.median(train[r.name]), statistics.median(infer[r.name])
        out[r.name] = {"config": r.name, "model": r.kind, "llm": r.llm, "bf16": r.bf16, "train_ms": 1e3 * step,
                       "train_ms_all": [round(1e3 * t) for t in train[r.name]],
                       "train_windows_s": args.batch_size / step, "infer_ms": 1e3 * inf,
                       "infer_windows_s": args.batch_size / inf,
                       "trainable_params": sum(p.numel() for p in r.params),
                       "total_params": sum(p.numel() for p in r.model.parameters()),
                       "threads": torch.get_num_threads()}
    return out


def _memory(run: tuple[str, str | None], args: argparse.Namespace) -> dict:
    (runner,) = _setup([run], args)
    built = _rss_mib()
    for _ in range(2):
        runner.train_step()
    trained = _rss_mib()
    runner.infer()
    return {"rss_built_mib": built, "rss_peak_mib": _rss_mib(), "rss_train_growth_mib": trained - built}


def _run_worker(task: str, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "utils.benchmark", "model", *argv, "--_worker", task]
    proc = subprocess.run(cmd, cwd=_REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {task} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _table(results: list[dict]) -> str:
    ref = next((r for r in results if r["config"] == _REFERENCE), None)
    multi = len({r["llm"] for r in results if r["llm"]}) > 1

    def label(r: dict) -> str:
        llm = f"[{r['llm']}]" if multi and r["llm"] else ""
        return f"{r['model']}{llm} {'bf16' if r['bf16'] else 'fp32'}"
    w = max(18, max(len(label(r)) for r in results) + 2)
    head = (f"{'configuration':<{w}}{'train ms/step':>14}{'train win/s':>12}{'infer ms':>10}{'infer win/s':>12}"
            f"{'peak RSS MiB':>13}{'+train MiB':>11}{'trainable':>13}{'total':>13}{'train x':>9}{'infer x':>9}")
    lines = [head, "-" * len(head)]
    for r in results:
        tx = f"{ref['train_ms'] / r['train_ms']:.2f}" if ref else "-"
        ix = f"{ref['infer_ms'] / r['infer_ms']:.2f}" if ref else "-"
        lines.append(f"{label(r):<{w}}{r['train_ms']:>14.0f}{r['train_windows_s']:>12.1f}{r['infer_ms']:>10.0f}"
                     f"{r['infer_windows_s']:>12.1f}{r['rss_peak_mib']:>13.0f}{r['rss_train_growth_mib']:>11.0f}"
                     f"{r['trainable_params']:>13,}{r['total_params']:>13,}{tx:>9}{ix:>9}")
    if ref:
        lines.append(f"train x / infer x: speed relative to {ref['model']} fp32 (> 1 = faster)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    llms = [m.strip() for m in args.llm.split(",") if m.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown --configs {unknown}; choose from {', '.join(CONFIGS)}")
    if args._worker:
        task, _, name = args._worker.partition(":")
        runs = _runs(names, llms)
        result = _timing(runs, args) if task == "timing" else _memory(next(r for r in runs if r[0] == name), args)
        print(json.dumps(result))
        return 0
    argv = [f"--batch_size={args.batch_size}", f"--seq_len={args.seq_len}", f"--channels={args.channels}",
            f"--llm={args.llm}", f"--llm_init={args.llm_init}", f"--llm_layers={args.llm_layers}",
            f"--model_flags={args.model_flags}", f"--warmup={args.warmup}", f"--steps={args.steps}",
            f"--infer_steps={args.infer_steps}", f"--configs={','.join(names)}"] \
        + ([f"--threads={args.threads}"] if args.threads else [])
    print(f"model benchmark: B={args.batch_size} L={args.seq_len} C={args.channels}, {args.llm_layers} LLM layers, "
          f"CrossAlign --llm {args.llm} --llm_init {args.llm_init} {args.model_flags}; threads "
          f"{args.threads or 'torch default'}; {args.warmup} warm-up + {args.steps} timed steps, interleaved")
    print(f"  before: {_load()}", flush=True)
    timing = _run_worker("timing", argv)
    print(f"  timed:  {_load()}", flush=True)
    results = []
    for name, _ in _runs(names, llms):
        results.append({**timing[name], **_run_worker(f"memory:{name}", argv)})
    print(f"  after memory runs: {_load()}")
    print(_table(results))
    if args.json:
        from utils.io import save_json
        save_json(args.json, {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                              "results": results})
    return 0

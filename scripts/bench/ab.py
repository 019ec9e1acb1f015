"""This checkout against another one, step for step: `python -m scripts.bench ab --baseline DIR [model options]`.

For speed work: is a change faster, on a machine whose speed drifts? Two
sequential runs of ``scripts.bench model`` can differ by more than the change
(this session's host measured the same bf16 GEMMs at 275-563 GFLOP/s within
an hour), so both sides run at once, in two processes that take turns: one
training step of configuration ``c`` in the baseline, then the same in this
checkout (the order alternating round by round), so that whatever the machine
does hits both alike; only one of them computes at any time. ``DIR`` is any
checkout of this repository from after the model benchmark's ``--setting``
option landed, e.g. ``git worktree add /tmp/base 10cfd28``; each side builds
the models with its own code (``scripts/bench/ab_worker.py``) and its own
allocator policy. The options are the model benchmark's (``--setting``,
``--configs``, ``--steps``, ...).

Taking turns cancels the host's drift, not what a process carries for its
whole life: on a shared host the same code on both sides read 0.95-1.04x from
one pair of processes to the next (the README's "Speed"), an offset per process of a few percent (where its pages
land in the caches, suspected). ``--processes N`` runs N pairs of worker
processes one after the other, each pair for all the rounds, and reports each
pair's paired ratio beside the median of all rounds: their spread is what the
comparison resolves (run it with ``--baseline`` this checkout itself to see
that spread with no change at all).

Output: per configuration the median training step and inference pass of each
side and their ratio (baseline / this = the speed-up), the pairs' own paired
ratios, and the GEMM floor of ``scripts.bench model`` (this side's FLOPs over
the GEMM rate measured here after every round) as floor/step for both sides.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from scripts.bench import model as bm

_REPO = Path(__file__).resolve().parents[2]
_WORKER = Path(__file__).with_name("ab_worker.py")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", required=True, help="another checkout of this repository (a folder)")
    bm.add_args(parser)
    parser.add_argument("--processes", type=int, default=1,
                        help="pairs of worker processes, one pair after the other, each for all the rounds: their "
                             "paired ratios' spread shows the per-process offset (3 or more to see it)")
    parser.set_defaults(configs=None)  # CrossAlign fp32 and bf16 (bf16 only with fast bf16 matmuls here)


class _Side:
    """A worker process (``ab_worker.py`` run in ``checkout``) and its one-line JSON protocol."""

    def __init__(self, label: str, checkout: Path, argv: list[str]) -> None:
        self.label = label
        self.proc = subprocess.Popen([sys.executable, str(_WORKER), *argv], cwd=checkout, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def wait_ready(self) -> None:
        self._read()  # {"ready": [...]}: the models are built

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.label} side's worker exited (rc {self.proc.wait()}); its error is above")
        return json.loads(line)

    def ask(self, *cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write('["quit"]\n')
            self.proc.stdin.close()
            self.proc.wait()


def _rounds(sides: list[_Side], task: str, n_configs: int, warmup: int, steps: int) -> dict:
    """``{(side label, config index): [seconds, ...]}`` over ``steps`` timed rounds; the side going first
    alternates from round to round. After each training round our side measures the GEMM rate."""
    times = {(s.label, c): [] for s in sides for c in range(n_configs)}
    rates = {c: [] for c in range(n_configs)}
    for i in range(warmup + steps):
        for c in range(n_configs):
            for s in (sides if i % 2 == 0 else sides[::-1]):
                dt = s.ask(task, c)
                if i >= warmup:
                    times[s.label, c].append(dt)
            if task == "train" and i >= warmup:
                rates[c].append(sides[1].ask("gemm", c))
    return {"times": times, "rates": rates}


def _pair(baseline: Path, argv: list[str], n_configs: int, args: argparse.Namespace, index: int) -> dict:
    """One pair of workers (started in turn, the baseline first in even pairs) for all the rounds; the pair's
    timings, GEMM rates and this side's FLOPs."""
    order = [("baseline", baseline), ("this", _REPO)]
    sides = {}
    try:
        for label, checkout in (order if index % 2 == 0 else order[::-1]):
            sides[label] = _Side(label, checkout, argv)
        for side in sides.values():
            side.wait_ready()
        pair = [sides["baseline"], sides["this"]]
        train = _rounds(pair, "train", n_configs, args.warmup, args.steps)
        infer = _rounds(pair, "infer", n_configs, 1, args.infer_steps)
        flops = [sides["this"].ask("flops", c) for c in range(n_configs)]
    finally:
        for side in sides.values():
            side.close()
    return {"train": train, "infer": infer, "flops": flops}


def _paired(times: dict, c: int) -> list[float]:
    """Each round's baseline / this for configuration c: the two steps of a round ran back to back."""
    return [b / t for b, t in zip(times["baseline", c], times["this", c])]


def main(args: argparse.Namespace) -> int:
    bm.apply_setting(args)
    if args.processes < 1:
        print(f"error: --processes must be >= 1, got {args.processes}", file=sys.stderr)
        return 2
    baseline = Path(args.baseline).expanduser()
    if not (baseline / "scripts" / "bench" / "model.py").is_file():
        print(f"error: --baseline {baseline} is not a checkout of this repository (no scripts/bench/model.py); "
              "make one with `git worktree add /tmp/base <commit>`", file=sys.stderr)
        return 2
    try:
        names, note = bm.config_names(args.configs, ("crossalign_fp32", "crossalign_bf16"))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    argv = bm.worker_argv(args, names, profiling=False)
    print(f"A/B: {baseline.resolve()} (baseline) vs {_REPO} (this), B={args.batch_size} L={args.seq_len} "
          f"C={args.channels}, --llm {args.llm} x {args.llm_layers}; threads {args.threads or 'torch default'}; "
          f"{args.warmup} warm-up + {args.steps} timed steps each, taking turns; {args.processes} pair(s) of "
          "processes")
    if note:
        print(f"  {note}")
    print(f"  before: {bm._load()}", flush=True)
    pairs = [_pair(baseline, argv, len(names), args, i) for i in range(args.processes)]
    print(f"  after:  {bm._load()}")
    labels, tasks = ("baseline", "this"), ("train", "infer")
    rows = []
    for c, name in enumerate(names):
        prec = "bf16" if bm.CONFIGS[name][1] else "fp32"
        rates = [r for pair in pairs for r in pair["train"]["rates"][c]]
        rate = statistics.median(r[prec]["train"] for r in rates)
        fwd = statistics.median(r[prec]["forward"] for r in rates)
        flops = pairs[0]["flops"][c]
        floor_ms, infer_floor_ms = flops["train"] / rate / 1e6, flops["infer"] / fwd / 1e6
        times = {(task, label): [t for pair in pairs for t in pair[task]["times"][label, c]]
                 for task in tasks for label in labels}
        rows.append({"config": name, "gemm_gflops_s": rate, "forward_gflops_s": fwd, "floor_ms": floor_ms,
                     "infer_floor_ms": infer_floor_ms,
                     **{f"{task}_ms_{label}": 1e3 * statistics.median(times[task, label])
                        for task in tasks for label in labels},
                     **{f"{task}_speedup_paired": statistics.median(
                         ratio for pair in pairs for ratio in _paired(pair[task]["times"], c)) for task in tasks},
                     **{f"{task}_speedup_by_process": [statistics.median(_paired(pair[task]["times"], c))
                                                        for pair in pairs] for task in tasks},
                     "train_ms_all": {label: [round(1e3 * t) for t in times["train", label]] for label in labels}})
    head = (f"{'configuration':<18}{'train ms base':>14}{'train ms this':>14}{'speed-up':>9}{'paired':>8}"
            f"{'floor ms':>9}{'floor/step':>16}{'infer ms base':>14}{'infer ms this':>14}{'speed-up':>9}"
            f"{'paired':>8}{'floor/pass':>16}")
    lines = [head, "-" * len(head)]
    for r in rows:
        tb, tt, ib, it = r["train_ms_baseline"], r["train_ms_this"], r["infer_ms_baseline"], r["infer_ms_this"]
        fl, ifl = r["floor_ms"], r["infer_floor_ms"]
        lines.append(f"{r['config']:<18}{tb:>14.0f}{tt:>14.0f}{tb / tt:>9.2f}{r['train_speedup_paired']:>8.2f}"
                     f"{fl:>9.0f}{f'{fl / tb:.0%} -> {fl / tt:.0%}':>16}{ib:>14.0f}{it:>14.0f}{ib / it:>9.2f}"
                     f"{r['infer_speedup_paired']:>8.2f}{f'{ifl / ib:.0%} -> {ifl / it:.0%}':>16}")
    if args.processes > 1:
        for r in rows:
            lines.append(f"{r['config']}: paired by pair of processes: training "
                         + " ".join(f"{x:.2f}" for x in r["train_speedup_by_process"]) + "; inference "
                         + " ".join(f"{x:.2f}" for x in r["infer_speedup_by_process"]))
    lines += ["speed-up = baseline ms / this ms (medians); paired = the median over rounds of each round's",
              "  baseline / this (the two steps of a round run back to back, so the host's drift cancels, but",
              "  not an offset a process keeps for its life: with one pair of processes a few percent here;",
              "  --processes N shows each pair's own ratio, and their spread is what this comparison resolves);",
              "  floor = this side's matmul FLOPs / the GEMM rate of the",
              "  configuration's block shape and precision measured after every round (as scripts.bench model);",
              "  floor/step and floor/pass: baseline -> this. GEMM rates: "
              + "; ".join(f"{r['config']} {r['gemm_gflops_s']:.0f} (forward {r['forward_gflops_s']:.0f}) GFLOP/s"
                          for r in rows)]
    print("\n".join(lines))
    if args.json:
        from utils.io import save_json
        save_json(args.json, {"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                              "baseline": str(baseline.resolve()), "results": rows})
    return 0

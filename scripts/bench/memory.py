"""Memory on a long series: `python -m scripts.bench memory [--points 10000000 --channels 38]`.

Writes a synthetic series (sines plus noise, a few injected anomalies) to disk in the
NIPS_TS_Swan `.npy` layout that `run.py --data NIPS_TS_Swan` reads (`<dir>/NIPS_TS_Swan_train.npy`,
`_test.npy`, `_test_label.npy`; written chunk by chunk with `np.lib.format.open_memmap`, so writing
does not hold it in RAM either), then, in a fresh process so that the numbers are the run's own:
loads the data (memory-mapped), trains LinearAE for `--steps` steps and runs one validation pass,
and scores every test point (`ExpAnomalyDetection.point_scores`). The metrics report is not
computed (the benchmark is about the data path). It prints the run's peak resident memory (VmHWM
of /proc/self/status: unlike ru_maxrss, it does not inherit the high-water mark of the process that
forked it) and the peak of its private part (RssAnon, sampled every 20 ms) beside the files' size.

Resident memory counts the file pages a process has mapped and touched; `MappedSeries` unmaps
them as it reads (they stay in the kernel's page cache, which is reclaimable), so the peak stays
bounded by the window/batch/accumulator arrays, not by the series.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

PREFIX = "NIPS_TS_Swan"  # 38 channels in the table; the data decide the count


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", type=int, default=10_000_000, help="points in each of the train and test files")
    p.add_argument("--channels", type=int, default=38)
    p.add_argument("--seq_len", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="training steps (batch 32)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder, removed)")
    p.add_argument("--mapped_min_bytes", type=int, default=None,
                   help="keep splits this large on the map (default: data_provider.anomaly.MAPPED_MIN_BYTES)")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)


def write_series(folder: str, points: int, channels: int, seed: int = 0, chunk: int = 1 << 18) -> int:
    """Write train/test/label files of `points` x `channels` float32; returns the bytes written."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    period = rng.uniform(50, 500, channels)
    phase = rng.uniform(0, 2 * np.pi, channels)
    labels = np.lib.format.open_memmap(os.path.join(folder, f"{PREFIX}_test_label.npy"), "w+", np.float32, (points,))
    for split in ("train", "test"):
        out = np.lib.format.open_memmap(os.path.join(folder, f"{PREFIX}_{split}.npy"), "w+", np.float32,
                                        (points, channels))
        for a in range(0, points, chunk):
            t = np.arange(a, min(a + chunk, points))[:, None]
            block = np.sin(2 * np.pi * t / period + phase) + 0.1 * rng.standard_normal((len(t), channels))
            if split == "test":
                hit = rng.random(len(t)) < 1e-4  # isolated spikes, ~0.01 % of points
                block[hit] += 5.0
                labels[a:a + len(t)] = hit
            out[a:a + len(t)] = block
        out.flush()
        del out
    labels.flush()
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


class _AnonPeak:
    """Peak of RssAnon (private resident memory) sampled from /proc/self/status."""

    def __init__(self, every: float = 0.02):
        self.peak_kib, self._stop, self._every = 0, threading.Event(), every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except OSError:
                return
            self._stop.wait(self._every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(args: argparse.Namespace) -> dict:
    import torch

    import data_provider.anomaly as anomaly
    import run
    from data_provider.defaults import apply_defaults
    from exp.exp_anomaly_detection import ExpAnomalyDetection

    torch.set_num_threads(args.threads)
    if args.mapped_min_bytes is not None:
        anomaly.MAPPED_MIN_BYTES = args.mapped_min_bytes
    out = tempfile.mkdtemp(prefix="bench-memory-out-")
    flags = ["--model", "LinearAE", "--data", PREFIX, "--root_path", args._child, "--seq_len", str(args.seq_len),
             "--step", str(args.seq_len), "--batch_size", "32", "--train_epochs", "1",
             "--max_train_steps", str(args.steps), "--d_model", "64", "--threads", str(args.threads),
             "--checkpoints", out, "--results", out, "--no_progress", "--use_gpu", "0"]
    with _AnonPeak() as anon:
        t0 = time.time()
        exp = ExpAnomalyDetection(apply_defaults(run.parse_args(flags)))
        t_load = time.time() - t0
        setting = exp.setting(0)
        t0 = time.time()
        record = exp.train(setting)
        t_train = time.time() - t0
        t0 = time.time()
        scores = exp.point_scores(exp.data.test, exp.args.test_step)
        t_score = time.time() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"mapped": bool(exp.data.info.get("memory_mapped")), "n_test": len(scores),
            "finite": bool(np.isfinite(scores).all()), "steps": record["epochs"][0]["steps"],
            "val_windows": len(exp.val_loader.dataset), "load_s": t_load, "train_s": t_train, "score_s": t_score,
            "peak_rss_mib": _status_kib("VmHWM") / 1024,
            "peak_anon_mib": anon.peak_kib / 1024}


def main(args: argparse.Namespace) -> int:
    if args._child:
        print("RESULT " + json.dumps(_child(args)))
        return 0
    folder = args.dir or tempfile.mkdtemp(prefix="bench-memory-")
    try:
        t0 = time.time()
        size = write_series(folder, args.points, args.channels)
        print(f"wrote {args.points:,} x {args.channels} float32 train and test series + labels to {folder}: "
              f"{size / 2 ** 20:,.0f} MiB in {time.time() - t0:.0f} s")
        cmd = [sys.executable, "-m", "scripts.bench", "memory", "--_child", folder, "--seq_len", str(args.seq_len),
               "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.mapped_min_bytes is not None:
            cmd += ["--mapped_min_bytes", str(args.mapped_min_bytes)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(lines[-1][7:])
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print(f"load average {' '.join(load)}; {args.threads} thread(s)")
        print(f"{'files on disk':<34}{size / 2 ** 20:>10,.0f} MiB")
        print(f"{'peak RSS (VmHWM)':<34}{r['peak_rss_mib']:>10,.0f} MiB")
        print(f"{'peak private RSS (RssAnon)':<34}{r['peak_anon_mib']:>10,.0f} MiB")
        print(f"memory-mapped: {r['mapped']}; load {r['load_s']:.0f} s, train {r['steps']} steps + validation on "
              f"{r['val_windows']:,} windows {r['train_s']:.0f} s, scoring {r['n_test']:,} test points "
              f"{r['score_s']:.0f} s (finite: {r['finite']})")
        return 0
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)

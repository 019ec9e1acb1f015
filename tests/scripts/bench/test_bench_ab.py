"""`python -m scripts.bench ab`: two checkouts' model benchmarks taking turns."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _ab(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.bench", "ab", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_ab_times_both_sides_in_turns_and_reports_the_speed_up(tmp_path):
    out = tmp_path / "ab.json"
    # this checkout against itself, two pairs of processes of one step each: both sides must run every step
    # and agree on what they ran
    proc = _ab("--baseline", str(REPO), "--setting", "quickstart", "--batch_size", "2", "--seq_len", "16",
               "--llm_layers", "1", "--configs", "crossalign_fp32", "--warmup", "0", "--steps", "1",
               "--infer_steps", "1", "--threads", "1", "--processes", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "crossalign_fp32" in proc.stdout and "speed-up" in proc.stdout
    (row,) = json.loads(out.read_text())["results"]
    assert len(row["train_ms_all"]["baseline"]) == len(row["train_ms_all"]["this"]) == 2
    for key in ("train_ms_baseline", "train_ms_this", "infer_ms_baseline", "infer_ms_this", "floor_ms",
                "train_speedup_paired", "infer_speedup_paired"):
        assert row[key] > 0
    ratios = [b / t for b, t in zip(row["train_ms_all"]["baseline"], row["train_ms_all"]["this"])]
    assert min(ratios) * 0.99 <= row["train_speedup_paired"] <= max(ratios) * 1.01  # the median of 2 (rounded ms)
    # one step per pair: each pair's own ratio is its one round's
    assert len(row["train_speedup_by_process"]) == 2
    assert all(abs(a - b) <= 0.02 * b for a, b in zip(row["train_speedup_by_process"], ratios))  # ms rounded
    assert len(row["infer_speedup_by_process"]) == 2
    assert "paired by pair of processes" in proc.stdout
    assert row["gemm_gflops_s"] > 0 and row["floor_ms"] < row["train_ms_this"]  # a floor below the step itself


def test_ab_rejects_fewer_than_one_pair_of_processes():
    proc = _ab("--baseline", str(REPO), "--processes", "0")
    assert proc.returncode == 2 and "--processes must be >= 1" in proc.stderr and "Traceback" not in proc.stderr


def test_ab_rejects_a_folder_that_is_not_a_checkout(tmp_path):
    proc = _ab("--baseline", str(tmp_path))
    assert proc.returncode == 2
    assert "not a checkout of this repository" in proc.stderr and "git worktree add" in proc.stderr
    assert "Traceback" not in proc.stderr

"""`python -m scripts.bench gpu` on the CPU with a tiny backbone: the table gpu_check.sh prints on CUDA."""
from __future__ import annotations

import argparse
import subprocess

import pytest

from conftest import REPO
from layers.mamba import cpu_kernel_error
from scripts.bench import gpu


@pytest.mark.slow  # builds CrossAlign four times: ~10-20 s
def test_gpu_bench_table_runs_on_cpu(tiny_gpt2, capsys, one_thread):
    p = argparse.ArgumentParser()
    gpu.add_args(p)
    args = p.parse_args(["--device", "cpu", "--batches", "2", "--precisions", "fp32,bf16", "--llm", tiny_gpt2,
                         "--llm_layers", "1", "--seq_len", "16", "--channels", "3", "--warmup", "0", "--steps", "1",
                         "--model_flags", "--n_heads 4 --d_ssm 16 --ssm_layers 1 --pmd_size 8"])
    assert gpu.main(args) == 0
    out = capsys.readouterr().out
    assert "| precision | batch | train step ms" in out
    cpu_scan = "cpu_kernel" if cpu_kernel_error() is None else "torch"  # the C kernel where it builds
    assert out.count(f"| {cpu_scan} |") == 2 and "| fp32 | 2 |" in out and "| bf16 | 2 |" in out


def test_gpu_check_script_stops_clearly_without_cuda():
    proc = subprocess.run(["bash", "scripts/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device visible" in proc.stderr

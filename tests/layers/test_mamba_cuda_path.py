"""The CUDA path of the Mamba block that a CPU machine can check: kernel limits, first-call probe, fallback, record."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch

from layers import fast_ops
from layers import mamba as mamba_mod
from layers.mamba import Mamba, cuda_kernel_limits, probe_cuda_ops


def test_kernel_limits_name_each_flag():
    assert cuda_kernel_limits(128, 4, 16) is None
    msg = cuda_kernel_limits(20, 5, 300)
    assert "--d_ssm) 20 is not divisible by 8" in msg and "--d_conv 5 is outside 2..4" in msg
    assert "--d_state 300 exceeds 256" in msg
    with pytest.raises(ValueError, match="--d_conv 1 is outside 2..4.*--ssm_backend auto/torch"):
        Mamba(16, d_conv=1, backend="cuda")


def test_probe_without_mamba_ssm_says_why(monkeypatch):
    monkeypatch.setattr(mamba_mod, "_CUDA_OPS", {"scan": None, "conv": None, "error": "ImportError: no mamba_ssm"})
    monkeypatch.setattr(mamba_mod, "_PROBED", {})
    assert probe_cuda_ops(torch.device("cuda:0")) == "ImportError: no mamba_ssm"


@pytest.mark.parametrize("limits,probe,expected", [
    ("width not divisible by 8", None, "using the PyTorch scan instead"),
    (None, "RuntimeError: no kernel image is available", "failed their first-call check"),
    (None, None, None),
])
def test_auto_backend_falls_back_with_a_message(monkeypatch, capsys, limits, probe, expected):
    m = Mamba(16, backend="auto")
    m._limits = limits
    monkeypatch.setattr(mamba_mod, "cuda_ops_available", lambda: True)
    monkeypatch.setattr(mamba_mod, "probe_cuda_ops", lambda device: probe)
    monkeypatch.setattr(mamba_mod, "_WARNED", set())
    used = m._use_cuda(SimpleNamespace(is_cuda=True, device="cuda:0"))
    out = capsys.readouterr().out
    assert used is (expected is None)
    assert (expected or "Mamba:") in out if expected else out == ""


@pytest.mark.slow  # builds and trains a tiny CrossAlign: ~10-30 s
def test_metrics_record_the_backend_that_ran_and_fp32_on_cpu(run_cli, tiny_gpt2, tmp_path, one_thread):
    code, results = run_cli("--model", "CrossAlign", "--data", "Synthetic", "--synthetic_length", "600",
                            "--synthetic_channels", "2", "--seq_len", "16", "--step", "8", "--train_epochs", "1",
                            "--max_train_steps", "2", "--batch_size", "8", "--threads", "1", "--llm", tiny_gpt2,
                            "--llm_init", "random", "--llm_layers", "1", "--n_heads", "4", "--d_ssm", "16",
                            "--ssm_layers", "1", "--pmd_size", "8")
    assert code == 0
    (setting,) = [d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))]
    payload = json.load(open(os.path.join(results, setting, "metrics.json")))
    # the C kernels where they build: the scan, dropout, GPT-2's tanh GELU, LoRA with its dropout inside,
    # and attention (GPT-2's and CrossAlign's own)
    cpu_scan = "cpu_kernel" if mamba_mod.cpu_kernel_error() is None else "torch"
    cpu_dropout = "cpu_kernel" if fast_ops.kernel_error() is None else "numpy"
    cpu_gelu = "cpu_kernel" if fast_ops.gelu_kernel_error() is None else "torch"
    lora = (["Linear: lora_cpu_kernel"] if fast_ops.lora_kernel_error() is None
            else ["Linear: torch", f"LoraDropout: {cpu_dropout}"])
    cpu_attention = "cpu_kernel" if fast_ops.attention_kernel_error() is None else "torch"
    assert payload["model"]["backends_used"] == sorted([f"Dropout: {cpu_dropout}", *lora, f"Mamba: {cpu_scan}",
                                                        f"TanhGELU: {cpu_gelu}", f"GPT2Attention: {cpu_attention}",
                                                        f"MultiHeadAttention: {cpu_attention}"])
    assert payload["args"]["bf16"] == 0  # the CPU default

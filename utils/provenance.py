"""What a result needs to be reproducible: git commit, package versions, machine."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

_PACKAGES = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "transformers", "peft", "mamba-ssm", "mambapy")


def git_commit() -> dict:
    """`{"commit": sha or None, "dirty": bool or None}` of the repository holding this file."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty if sha else None}


def package_versions() -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_bf16_native() -> bool | None:
    """Whether PyTorch runs bf16 matmuls on this CPU through oneDNN (AVX-512 BF16/AMX, or AVX-512 cores).

    False: it falls back to its reference bf16 GEMM, which on an AMD EPYC with AVX2 only measured 7-70x
    *slower* than fp32 (0.9-9 vs 65 GFLOP/s at 3200 x 768 x 3072), so ``--bf16 1`` slows a CPU run down
    there instead of speeding it up. None: this PyTorch cannot say (the check is a private op).
    """
    import torch
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def slow_bf16_reason() -> str | None:
    """Why bf16 autocast would slow this CPU down (``cpu_bf16_native() is False``), else None."""
    if cpu_bf16_native() is not False:
        return None
    import torch
    return (f"this CPU ({cpu_name()}, {torch.backends.cpu.get_cpu_capability()}) has no fast bf16 matmul in "
            "PyTorch (no AVX-512/AMX): bf16 GEMMs run slower than fp32, measured 7-70x on an AVX2 EPYC")


def provenance() -> dict:
    import torch
    return {**git_commit(), "packages": package_versions(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_native": cpu_bf16_native(),
            "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}

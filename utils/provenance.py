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


def provenance() -> dict:
    import torch
    return {**git_commit(), "packages": package_versions(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}

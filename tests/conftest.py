"""Shared test fixtures: the real-data root and a helper to run the CLI in a temporary folder."""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DATA_ROOT = os.environ.get("CROSSALIGN_DATA", os.path.join(REPO, "..", "shared", "data"))


def data_path(*parts: str) -> str:
    """Path under the real-data root; skips the calling test with a reason when it is absent."""
    path = os.path.join(DATA_ROOT, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not found at {path} (set CROSSALIGN_DATA to the shared data folder)")
    return path


@pytest.fixture
def run_cli(tmp_path):
    """Call run.main with checkpoints/results inside tmp_path; returns (exit code, results dir)."""
    import run

    def _run(*flags: str, plot: bool = False) -> tuple[int, str]:
        results = str(tmp_path / "results")
        common = ["--checkpoints", str(tmp_path / "checkpoints"), "--results", results, "--no_progress"]
        return run.main([*flags, *common, *([] if plot else ["--no_plot"])]), results
    return _run


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops on a shared 2-core machine: one thread avoids OpenMP barrier stalls (10-50x slower when busy)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference(module: str):
    """Import a reference implementation used only by cross-check tests (installed with `pip install
    --no-deps -r requirements-nodeps.txt`). Skips with the fix when absent, except under CI, where a
    missing reference is a failure: the cross-checks must run on every submission."""
    if os.environ.get("CI"):
        import importlib
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"reference {module} not installed: "
                                              f"pip install --no-deps -r requirements-nodeps.txt")

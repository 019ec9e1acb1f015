"""Shared test fixtures: the real-data root, the C kernels' build-or-skip check, the CLI in a temporary
folder, one thread, tiny backbones, and the reference implementations. `pytest.ini` puts the repository root and tests/ on the path."""
from __future__ import annotations

import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DATA_ROOT = os.environ.get("CROSSALIGN_DATA", os.path.join(REPO, "..", "shared", "data"))


def data_path(*parts: str) -> str:
    """Path under the real-data root; skips the calling test with a reason when it is absent."""
    path = os.path.join(DATA_ROOT, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data not found at {path} (set CROSSALIGN_DATA to the shared data folder)")
    return path


def require_c_kernel(name: str, kernel_error) -> None:
    """A C kernel (layers/csrc) must build and pass its first-call check (``kernel_error()`` None) wherever
    there is a C compiler; without one the calling test skips, saying so."""
    from layers import ckernel
    if ckernel.find_compiler() is None:
        pytest.skip(f"no C compiler (cc, gcc or clang) on PATH: the C {name} kernel cannot be built here")
    assert kernel_error() is None


def make_kernel_disagree(monkeypatch, request, kernel, function) -> None:
    """Reset ``kernel``'s first-call check (and again after the test, so that later tests check the real kernel)
    and make the autograd Function ``function`` that calls it 0.1 % off: the check must then refuse the kernel."""
    request.addfinalizer(kernel.reset)
    kernel.reset()
    real = function.forward
    monkeypatch.setattr(function, "forward", staticmethod(lambda ctx, *a: real(ctx, *a) * 1.001))


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


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    """A folder with the config of a 3-block GPT-2 of width 32 (vocabulary 300): load it with --llm_init random."""
    from transformers import GPT2Config
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=300, n_positions=128).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """A folder with the config of a 3-block Llama of width 32 (grouped keys/values, vocabulary 300)."""
    from transformers import LlamaConfig
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=300).save_pretrained(str(folder))
    return str(folder)

"""Tests for layers/scan_kernel.py: the compiled CPU selective scan against the step-by-step recurrence,
its threads and special values, the Mamba module's choice of it, its build cache and its fallbacks."""
from __future__ import annotations

import ctypes
import os
import stat

import pytest
import torch

from conftest import require_c_kernel
from layers import mamba as mamba_mod
from layers import ckernel, scan_kernel
from layers.mamba import MambaStack, selective_scan_cpu, selective_scan_ref, selective_scan_torch


@pytest.fixture
def kernel():
    require_c_kernel("scan", mamba_mod.cpu_kernel_error)


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path, request):
    """A loader that has not built or checked anything yet, caching into tmp_path (restored afterwards)."""
    monkeypatch.setenv("CROSSALIGN_KERNEL_DIR", str(tmp_path))
    scan_kernel.KERNEL.reset()
    request.addfinalizer(scan_kernel.KERNEL.reset)  # later tests load the library from the normal cache again
    return tmp_path


def _inputs(batch: int, d_in: int, n: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Scan inputs in float64 (for the reference), [B, D, L] as transposed views of [B, L, D] (as Mamba passes)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(u=r(batch, length, d_in).mT, delta=(r(batch, length, d_in) * 0.5).mT,
                A=-torch.rand(d_in, n, generator=g, dtype=torch.float64) * 4 - 0.1,
                B=r(batch, length, n).mT, C=r(batch, length, n).mT, D=r(d_in), z=r(batch, length, d_in).mT,
                delta_bias=r(d_in) * 0.3)


def _count_kernel_calls(monkeypatch, function=scan_kernel.KernelScanCore) -> list[int]:
    """A list that grows by one at each call of the autograd Function ``function`` (the scan kernel's core)."""
    calls = []
    apply = function.apply
    monkeypatch.setattr(function, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


def _grads(fn, inp: dict[str, torch.Tensor], dtype: torch.dtype, softplus: bool, gy: torch.Tensor):
    leaves = {k: v.detach().to(dtype).requires_grad_(True) for k, v in inp.items() if v is not None}
    y = fn(**leaves, delta_softplus=softplus)
    grads = torch.autograd.grad(y, list(leaves.values()), gy.to(dtype))
    return y.detach().double(), {k: g.double() for k, g in zip(leaves, grads)}


# lengths around the kernel's segment of 32 steps; widths below, at and across its 8-channel vectors
@pytest.mark.parametrize("batch,d_in,n,length", [(2, 8, 4, 1), (2, 13, 3, 31), (3, 16, 16, 32), (2, 21, 5, 33),
                                                 (1, 3, 1, 100), (2, 24, 7, 65)])
@pytest.mark.parametrize("softplus,bias,use_z,use_d", [(True, True, True, True), (False, False, False, False)])
def test_kernel_matches_reference_outputs_and_grads(kernel, monkeypatch, batch, d_in, n, length, softplus, bias,
                                                    use_z, use_d):
    inp = _inputs(batch, d_in, n, length)
    if not softplus:
        inp["delta"] = inp["delta"].abs()  # delta >= 0, as softplus would make it
    for name, keep in (("delta_bias", bias), ("z", use_z), ("D", use_d)):
        if not keep:
            inp[name] = None
    calls = _count_kernel_calls(monkeypatch)
    gy = torch.randn(batch, d_in, length, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y_ref, g_ref = _grads(selective_scan_ref, inp, torch.float64, softplus, gy)
    y, g = _grads(selective_scan_cpu, inp, torch.float32, softplus, gy)
    assert calls, "selective_scan_cpu did not use the kernel"
    scale = lambda t: float(t.abs().max()) + 1e-12  # noqa: E731
    assert float((y - y_ref).abs().max()) <= 1e-5 * scale(y_ref)
    for name in g_ref:
        err = float((g[name] - g_ref[name]).abs().max())
        assert err <= 2e-5 * scale(g_ref[name]), f"grad of {name}: max error {err:.2e} vs scale {scale(g_ref[name]):.2e}"


def test_kernel_threads_agree(kernel):
    inp = {k: v.float() for k, v in _inputs(5, 20, 6, 70).items()}
    gy = torch.randn(5, 20, 70, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (1, 3):
            torch.set_num_threads(n_threads)
            results.append(_grads(selective_scan_cpu, inp, torch.float32, True, gy))
    finally:
        torch.set_num_threads(threads)
    (y1, g1), (y3, g3) = results
    assert torch.equal(y1, y3)  # each batch row is computed by one thread, the same way
    for name in g1:  # dA, D and delta_bias sum over the batch: per-thread partial sums, then added
        torch.testing.assert_close(g3[name], g1[name], rtol=1e-5, atol=1e-6, msg=lambda m: f"grad of {name}: {m}")


def test_kernel_no_grad_forward_equals_training_forward(kernel):
    inp = {k: v.float() for k, v in _inputs(2, 11, 4, 77).items()}
    with torch.no_grad():
        y = selective_scan_cpu(**inp, delta_softplus=True)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    assert torch.equal(selective_scan_cpu(**leaves, delta_softplus=True).detach(), y)


def test_kernel_long_sequence_large_delta_matches_torch_scan(kernel):
    inp = {k: v.float() for k, v in _inputs(2, 10, 4, 400).items()}
    inp["delta"] = inp["delta"] * 40  # exp(delta A) down to exp(-700): underflows to 0 in float32
    y_torch = selective_scan_torch(**inp, delta_softplus=True)
    y = selective_scan_cpu(**inp, delta_softplus=True)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_torch, rtol=1e-4, atol=1e-4)


def test_kernel_propagates_nan_like_the_torch_scan(kernel):
    inp = {k: v.float() for k, v in _inputs(2, 9, 3, 40).items()}
    for name, index in (("u", (1, 4, 10)), ("delta", (0, 2, 30))):
        bad = dict(inp, **{name: inp[name].clone()})
        bad[name][index] = float("nan")
        y_torch = selective_scan_torch(**bad, delta_softplus=True)
        y = selective_scan_cpu(**bad, delta_softplus=True)
        assert torch.equal(torch.isnan(y), torch.isnan(y_torch)), name
        assert torch.isnan(y).any()


def test_mamba_auto_backend_runs_the_kernel_on_cpu_float32(kernel):
    torch.manual_seed(0)
    auto, ref = MambaStack(16, n_layers=2, backend="auto"), MambaStack(16, n_layers=2, backend="torch")
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(3, 45, 16)
    torch.testing.assert_close(auto(x), ref(x), rtol=1e-4, atol=1e-5)
    assert [layer.mixer.backend_used for layer in auto.layers] == ["cpu_kernel", "cpu_kernel"]
    assert ref.layers[0].mixer.backend_used == "torch"
    auto.double()(x.double())
    assert auto.layers[0].mixer.backend_used == "torch"  # the kernel is float32 only


def test_build_is_cached_and_written_whole(kernel, fresh_loader):
    assert scan_kernel.unavailable_reason() is None
    built = sorted(fresh_loader.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so" and built[0].name.startswith("selective_scan-")
    stamp = built[0].stat().st_mtime_ns
    scan_kernel.KERNEL.reset()  # a new process: finds the build, does not compile again
    assert scan_kernel.unavailable_reason() is None
    assert sorted(fresh_loader.iterdir()) == built and built[0].stat().st_mtime_ns == stamp


def test_a_changed_shared_header_makes_a_new_build(tmp_path, monkeypatch):
    compiler = ckernel.find_compiler()
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    monkeypatch.setenv("CROSSALIGN_KERNEL_DIR", str(tmp_path / "built"))
    src = tmp_path / "csrc"
    src.mkdir()
    (src / "k.c").write_text('#include "shared.h"\nint answer(void) { return ANSWER; }\n')
    answers = []
    for value in (41, 42):
        (src / "shared.h").write_text(f"#define ANSWER {value}\n")
        answers.append((ckernel.build(compiler, src / "k.c"), value))
    assert answers[0][0] != answers[1][0]  # the source is the same; the header it includes is not
    for path, value in answers:
        assert ctypes.CDLL(str(path)).answer() == value


def test_without_a_compiler_the_torch_scan_runs(fresh_loader, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    why = mamba_mod.cpu_kernel_error()
    assert why is not None and "$CC='no-such-compiler-anywhere'" in why
    calls = _count_kernel_calls(monkeypatch)
    inp = {k: v.float() for k, v in _inputs(2, 8, 4, 20).items()}
    assert torch.equal(selective_scan_cpu(**inp, delta_softplus=True), selective_scan_torch(**inp, delta_softplus=True))
    stack = MambaStack(8, n_layers=1, backend="auto")
    stack(torch.randn(2, 10, 8))
    assert stack.layers[0].mixer.backend_used == "torch" and not calls
    assert list(fresh_loader.iterdir()) == []


def test_a_failing_compiler_is_named_with_its_message(fresh_loader, monkeypatch, tmp_path_factory):
    fake = tmp_path_factory.mktemp("bin") / "broken-cc"
    fake.write_text("#!/bin/sh\necho 'fatal error: no room on this disk' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(fake))
    why = scan_kernel.unavailable_reason()
    assert why is not None and "could not build selective_scan.c" in why and "no room on this disk" in why
    assert str(fake) in why
    assert not [p for p in os.listdir(fresh_loader)]  # no half-written library or temporary left behind


def test_a_kernel_that_disagrees_is_not_used(kernel, monkeypatch, request):
    right = scan_kernel.KernelScanCore

    class Wrong(right):
        @staticmethod
        def forward(ctx, *args):
            return right.forward(ctx, *args) * 1.01

    monkeypatch.setattr(scan_kernel, "KernelScanCore", Wrong)
    scan_kernel.KERNEL.reset()  # check again, with the wrong kernel
    request.addfinalizer(scan_kernel.KERNEL.reset)  # and with the right one after this test
    assert "disagrees with the PyTorch scan" in mamba_mod.cpu_kernel_error()
    stack = MambaStack(8, n_layers=1, backend="auto")
    stack(torch.randn(2, 10, 8))
    assert stack.layers[0].mixer.backend_used == "torch"



def test_first_use_inside_inference_mode_checks_and_runs_the_kernel(kernel, fresh_loader):
    """Scoring runs under torch.inference_mode(): the first-call check, which needs gradients, must still work."""
    stack = MambaStack(8, n_layers=1, backend="auto")
    with torch.inference_mode():
        y = stack(torch.randn(2, 10, 8))
    assert torch.isfinite(y).all() and stack.layers[0].mixer.backend_used == "cpu_kernel"
    assert mamba_mod.cpu_kernel_error() is None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch,length,d", [(3, 17, 13), (2, 100, 256)])
def test_kernel_gate_is_the_d_skip_and_silu_gate(kernel, monkeypatch, threads, batch, length, d):
    """(y + D u) silu(z) with z a strided half of a wider tensor (as Mamba's), a partial channel vector, one or
    two threads: float64 reference, outputs and every gradient."""
    monkeypatch.setattr(scan_kernel, "threads_for", lambda work: threads)
    g = torch.Generator().manual_seed(d)
    y, u, grad = (torch.randn(batch, length, d, generator=g) for _ in range(3))
    D, zz = torch.randn(d, generator=g), torch.randn(batch, length, 2 * d, generator=g) * 4
    results = []
    for fn, dtype in ((scan_kernel.KernelGate.apply, torch.float32), (mamba_mod._torch_gate, torch.float64)):
        zz_leaf = zz.to(dtype).clone().requires_grad_()
        leaves = [t.to(dtype).clone().requires_grad_() for t in (y, u, D)]
        out = fn(*leaves, zz_leaf[..., d:])
        out.backward(grad.to(dtype))
        results.append([out.detach()] + [t.grad for t in leaves] + [zz_leaf.grad])
    for ours, ref in zip(*results):
        assert ours.dtype == torch.float32
        assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert results[0][-1][..., :d].abs().max() == 0  # nothing flows into the other half


def test_mamba_gate_falls_back_without_d_or_z_or_in_float64(kernel, monkeypatch):
    calls = _count_kernel_calls(monkeypatch, scan_kernel.KernelGate)
    inp = _inputs(2, 5, 3, 9)
    f32 = {k: v.float() for k, v in inp.items()}
    selective_scan_cpu(**f32, delta_softplus=True)
    assert calls == [1]
    selective_scan_cpu(**{**f32, "z": None})
    selective_scan_cpu(**{**f32, "D": None})
    selective_scan_cpu(**inp)
    assert calls == [1]
    ref = selective_scan_torch(**f32, delta_softplus=True)
    torch.testing.assert_close(selective_scan_cpu(**f32, delta_softplus=True), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_kernel_softplus_is_softplus_of_delta_plus_bias(kernel, monkeypatch, threads, with_bias):
    """softplus(x + bias) and both gradients against float64, across PyTorch's threshold of 20 and far into the
    left tail, with a partial channel vector; one or two threads."""
    monkeypatch.setattr(scan_kernel, "threads_for", lambda work: threads)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-40, 40, 3 * 1000 * 13).reshape(3, 1000, 13), torch.randn(3, 7, 13, generator=g)], 1)
    bias = torch.randn(13, generator=g) if with_bias else None
    grad = torch.randn(x.shape, generator=g)
    results = []
    for fn, dtype in ((scan_kernel.KernelSoftplus.apply, torch.float32), (mamba_mod._torch_softplus, torch.float64)):
        leaves = [t.to(dtype).clone().requires_grad_() for t in (x, bias) if t is not None]
        out = fn(*leaves) if with_bias else fn(leaves[0], None)
        out.backward(grad.to(dtype))
        results.append([out.detach()] + [t.grad for t in leaves])
    (y, *grads), (ref, *ref_grads) = results
    assert y.dtype == torch.float32
    assert (y.double() - ref).abs().max() < 5e-7 * 40  # float32 rounding of values up to 40
    # relative accuracy in the left tail too, within the float32 rounding of v = x + bias and of v log2(e),
    # scaled by |v| in e^v
    v = x.double() + (0 if bias is None else bias.double())
    assert (((y.double() - ref) / ref).abs() <= 1.2e-7 * v.abs() + 3e-7).all()
    for ours, want in zip(grads, ref_grads):
        assert torch.allclose(ours.double(), want, rtol=1e-5, atol=1e-6 * want.abs().max().item())


def test_kernel_softplus_special_values(kernel):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -100.0, 100.0]).reshape(1, 1, 6)
    y = scan_kernel.KernelSoftplus.apply(x, None)
    assert y[0, 0, 0].isnan() and y[0, 0, 1] == float("inf") and y[0, 0, 2] == 0
    assert torch.allclose(y[0, 0, 3:], torch.tensor([0.6931472, 0.0, 100.0]))


def test_mamba_runs_the_softplus_kernel_in_float32_only(kernel, monkeypatch):
    calls = _count_kernel_calls(monkeypatch, scan_kernel.KernelSoftplus)
    inp = _inputs(2, 5, 3, 9)
    f32 = {k: v.float() for k, v in inp.items()}
    torch.testing.assert_close(selective_scan_cpu(**f32, delta_softplus=True),
                               selective_scan_torch(**f32, delta_softplus=True), rtol=1e-4, atol=1e-5)
    assert calls == [1]
    selective_scan_cpu(**f32)  # no softplus
    selective_scan_cpu(**inp, delta_softplus=True)  # float64: PyTorch's
    assert calls == [1]

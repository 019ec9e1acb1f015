"""Tests for layers/mamba.py: the fast torch scan against the step-by-step recurrence,
the Mamba module's parameter layout (shared with mamba_ssm) and the backends."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from layers import mamba as mamba_mod
from layers.mamba import Mamba, MambaStack, causal_depthwise_conv1d, selective_scan_ref, selective_scan_torch


def _scan_inputs(batch: int, d_in: int, n: int, length: int, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return dict(u=r(batch, d_in, length), delta=r(batch, d_in, length) * 0.5,
                A=-torch.rand(d_in, n, generator=g, dtype=dtype) * 4 - 0.1,
                B=r(batch, n, length), C=r(batch, n, length), D=r(d_in), z=r(batch, d_in, length),
                delta_bias=r(d_in) * 0.3)


def _set_chunk(monkeypatch, steps: int | None, batch: int, d_in: int, n: int) -> None:
    """Force chunks of `steps` time steps (None: the default, one chunk at these sizes)."""
    if steps is not None:
        monkeypatch.setitem(mamba_mod._CHUNK_ELEMS, "cpu", steps * batch * d_in * n)


@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize("length", [1, 2, 7, 64, 105])
@pytest.mark.parametrize("softplus,bias,use_z,use_d", [
    (True, True, True, True), (False, False, False, False), (True, False, True, False), (False, True, False, True)])
def test_torch_scan_matches_reference_outputs_and_grads(monkeypatch, chunk, length, softplus, bias, use_z, use_d):
    _set_chunk(monkeypatch, chunk, 2, 4, 3)
    if chunk is not None:
        assert mamba_mod._chunk_len(2, 3, 4, length, torch.device("cpu")) == min(chunk, length)
    inp = _scan_inputs(2, 4, 3, length)
    if not softplus:
        inp["delta"] = inp["delta"].abs()  # keep delta >= 0 as softplus would
    if not bias:
        inp["delta_bias"] = None
    if not use_z:
        inp["z"] = None
    if not use_d:
        inp["D"] = None
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items() if v is not None}
    leaves2 = {k: v.clone().requires_grad_(True) for k, v in inp.items() if v is not None}
    y_ref = selective_scan_ref(**leaves, delta_softplus=softplus)
    y = selective_scan_torch(**leaves2, delta_softplus=softplus)
    assert y.shape == (2, 4, length) and y.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    names = list(leaves)
    g_ref = torch.autograd.grad(y_ref, [leaves[k] for k in names], gy)
    g = torch.autograd.grad(y, [leaves2[k] for k in names], gy)
    for name, a, b in zip(names, g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("chunk", [None, 4])
def test_partial_grads_only_requested_inputs(monkeypatch, chunk):
    _set_chunk(monkeypatch, chunk, 2, 3, 2)
    inp = _scan_inputs(2, 3, 2, 9)
    B = inp["B"].clone().requires_grad_(True)
    y = selective_scan_torch(inp["u"], inp["delta"], inp["A"], B, inp["C"])
    (gB,) = torch.autograd.grad(y.sum(), [B])
    Bref = inp["B"].clone().requires_grad_(True)
    (gB_ref,) = torch.autograd.grad(selective_scan_ref(inp["u"], inp["delta"], inp["A"], Bref, inp["C"]).sum(), [Bref])
    torch.testing.assert_close(gB, gB_ref)


@pytest.mark.parametrize("length", [1, 3, 10])
def test_no_grad_forward_carries_state_across_chunks(monkeypatch, length):
    _set_chunk(monkeypatch, 3, 2, 3, 2)  # without grad only one carry slab is kept between chunks
    inp = _scan_inputs(2, 3, 2, length)
    with torch.no_grad():
        y = selective_scan_torch(**inp, delta_softplus=True)
    torch.testing.assert_close(y, selective_scan_ref(**inp, delta_softplus=True), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk", [None, 64])
def test_long_sequence_large_delta_is_finite_and_exact(monkeypatch, chunk):
    # delta*A down to -2000 per step and L=1000: a cumulative-product formulation would overflow
    _set_chunk(monkeypatch, chunk, 1, 2, 4)
    inp = _scan_inputs(1, 2, 4, 1000, dtype=torch.float32, seed=3)
    inp["delta"] = inp["delta"].abs() * 50
    inp["A"] = inp["A"] * 10
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items()}
    y = selective_scan_torch(**leaves, delta_softplus=True)
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    assert all(torch.isfinite(v.grad).all() for v in leaves.values())
    y_ref = selective_scan_ref(**{k: v.double() for k, v in inp.items()}, delta_softplus=True)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)


def test_scan_half_precision_inputs_run_in_float32():
    inp = _scan_inputs(2, 3, 2, 11, dtype=torch.float32)
    y32 = selective_scan_torch(**inp, delta_softplus=True)
    y16 = selective_scan_torch(**{k: v.bfloat16() for k, v in inp.items()}, delta_softplus=True)
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, rtol=0.1, atol=0.1)


def test_scan_rejects_bad_shapes():
    inp = _scan_inputs(2, 3, 2, 5)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan_torch(**{**inp, "B": inp["B"][:, :, :4]})
    with pytest.raises(ValueError, match="A must be"):
        selective_scan_torch(**{**inp, "A": inp["A"].T})


@pytest.mark.parametrize("k,length,bias", [(4, 13, True), (4, 2, True), (1, 5, True), (3, 9, False)])
def test_causal_depthwise_conv1d_equals_padded_conv1d(k, length, bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, k, groups=6, padding=k - 1, bias=bias).double()
    x = torch.randn(3, length, 6, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = conv(x.mT)[..., :length].mT  # channels first, the causal part
    ours = causal_depthwise_conv1d(x2, conv.weight, conv.bias)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    grads_ref = torch.autograd.grad(ref, [x, conv.weight] + ([conv.bias] if bias else []), g)
    grads = torch.autograd.grad(ours, [x2, conv.weight] + ([conv.bias] if bias else []), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- module

# mamba_ssm.modules.mamba_simple.Mamba(d_model=16, d_state=8, d_conv=4, expand=2), bias=False, conv_bias=True
MAMBA_SSM_LAYOUT = {
    "A_log": (32, 8), "D": (32,), "in_proj.weight": (64, 16), "conv1d.weight": (32, 1, 4), "conv1d.bias": (32,),
    "x_proj.weight": (1 + 2 * 8, 32), "dt_proj.weight": (32, 1), "dt_proj.bias": (32,), "out_proj.weight": (16, 32),
}


def test_state_dict_matches_mamba_ssm_layout():
    m = Mamba(16, d_state=8, d_conv=4, expand=2, backend="torch")
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == MAMBA_SSM_LAYOUT
    # a checkpoint moves between backend settings unchanged
    Mamba(16, d_state=8, backend="auto").load_state_dict(m.state_dict(), strict=True)


def test_mamba_init_follows_paper():
    m = Mamba(32, d_state=6, dt_min=0.002, dt_max=0.05, backend="torch")
    torch.testing.assert_close(-torch.exp(m.A_log), -torch.arange(1, 7.0).repeat(64, 1))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.002 * (1 - 1e-4) and dt.max() <= 0.05 * (1 + 1e-4)
    assert torch.all(m.D == 1) and m.dt_rank == 2


def test_mamba_forward_shape_and_causality():
    torch.manual_seed(0)
    m = Mamba(8, d_state=4, backend="torch")
    x = torch.randn(3, 13, 8)
    y = m(x)
    assert y.shape == (3, 13, 8) and torch.isfinite(y).all()
    x2 = x.clone()
    x2[:, 9:] += 5.0  # changing the future must not change the past
    y2 = m(x2)
    torch.testing.assert_close(y2[:, :9], y[:, :9])
    assert not torch.allclose(y2[:, 9:], y[:, 9:])


def test_mamba_module_uses_reference_maths(monkeypatch):
    torch.manual_seed(0)
    m = Mamba(8, d_state=4, backend="torch").double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    y = m(x)
    monkeypatch.setattr(mamba_mod, "selective_scan_torch", selective_scan_ref)
    torch.testing.assert_close(m(x), y)


def test_mamba_stack_forward_backward_and_autocast():
    torch.manual_seed(0)
    stack = MambaStack(8, n_layers=2, d_state=4, d_conv=3, expand=2, backend="torch")
    x = torch.randn(2, 7, 8, requires_grad=True)
    y = stack(x)
    assert y.shape == (2, 7, 8)
    y.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in stack.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = stack(x)
    assert torch.isfinite(yb).all()
    assert set(stack.state_dict()) >= {"layers.1.mixer.A_log", "layers.0.norm.weight", "norm_f.weight"}


def test_bad_arguments_have_clear_errors():
    with pytest.raises(ValueError, match="backend"):
        Mamba(8, backend="cudnn")
    with pytest.raises(ValueError, match="n_layers"):
        MambaStack(8, n_layers=0)
    with pytest.raises(ValueError, match="d_model=8"):
        Mamba(8, backend="torch")(torch.randn(2, 5, 7))


@pytest.mark.skipif(mamba_mod.cuda_ops_available(), reason="mamba_ssm is importable here")
def test_cuda_backend_without_mamba_ssm_names_the_fix():
    with pytest.raises(RuntimeError, match="requirements-cuda.txt"):
        Mamba(8, backend="cuda")


@pytest.mark.skipif(not (mamba_mod.cuda_ops_available() and torch.cuda.is_available()),
                    reason="needs mamba_ssm and a CUDA device")
def test_cuda_and_torch_backends_agree():
    torch.manual_seed(0)
    ref = Mamba(32, d_state=16, backend="torch").cuda()
    cuda = Mamba(32, d_state=16, backend="cuda").cuda()
    cuda.load_state_dict(ref.state_dict())
    x = torch.randn(4, 100, 32, device="cuda", requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), cuda(x2)
    torch.testing.assert_close(y, y_ref, rtol=1e-3, atol=1e-4)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-3, atol=1e-3)
    cuda_params = dict(cuda.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(cuda_params[name].grad, p.grad, rtol=1e-2, atol=1e-3,
                                   msg=lambda m: f"grad of {name}: {m}")

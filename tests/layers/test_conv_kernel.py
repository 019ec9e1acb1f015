"""Tests for layers/conv_kernel.py: the compiled causal depthwise convolution + SiLU of Mamba against
``causal_depthwise_conv1d`` then ``F.silu``, its threads and strides, special values, Mamba's choice of it and
its fallbacks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import make_kernel_disagree, require_c_kernel
from layers import conv_kernel
from layers.ckernel import outputs_and_gradients
from layers import mamba as mamba_mod
from layers.mamba import Mamba, causal_conv_silu, causal_depthwise_conv1d

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def kernel():
    require_c_kernel("causal convolution", mamba_mod.conv_kernel_error)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("b,length,e,k,strided,bias", [(3, 13, 19, 4, True, True), (2, 3, 8, 4, False, True),
                                                       (4, 100, 256, 4, True, False), (2, 5, 7, 1, False, True),
                                                       (2, 40, 16, 3, True, True), (1, 2, 9, 6, False, False)])
def test_kernel_is_conv_then_silu(kernel, monkeypatch, threads, b, length, e, k, strided, bias):
    """Strided input (Mamba's half of its projection), partial channel vectors, widths other than Mamba's 4
    (and one longer than the sequence), with and without bias, one or two threads: float64 reference."""
    monkeypatch.setattr(conv_kernel, "threads_for", lambda work: threads)
    g = torch.Generator().manual_seed(length + e)
    x = torch.randn(b, length, 2 * e, generator=g)[..., :e]
    if not strided:
        x = x.contiguous()
    weight, gy = torch.randn(e, 1, k, generator=g), torch.randn(b, length, e, generator=g)
    b_ = torch.randn(e, generator=g) if bias else None
    inputs = [t for t in (x, weight, b_) if t is not None]  # the leaves keep x's strides
    ours = outputs_and_gradients(causal_conv_silu, inputs, gy)
    ref = outputs_and_gradients(lambda *t: F.silu(causal_depthwise_conv1d(*t)), [t.double() for t in inputs],
                                gy.double())
    for a, r in zip(ours, ref):
        assert a.dtype == torch.float32 and a.shape == r.shape
        assert torch.allclose(a.double(), r, rtol=1e-5, atol=1e-5 * r.abs().max().item())


def test_a_bf16_input_runs_the_kernel_in_float32_and_keeps_its_dtype(kernel, monkeypatch):
    """--bf16 1: the block's projection comes out of autocast in bf16; the kernel computes on the widened input,
    so the result is the float32 one rounded once to bf16, and the gradient reaches the bf16 input."""
    calls = []
    real = conv_kernel.CausalConvSiLU.apply
    monkeypatch.setattr(conv_kernel.CausalConvSiLU, "apply", lambda *a: calls.append(a[0].dtype) or real(*a))
    g = torch.Generator().manual_seed(0)
    xz = torch.randn(2, 30, 2 * 19, generator=g).bfloat16().requires_grad_()
    weight, bias = torch.randn(19, 1, 4, generator=g, requires_grad=True), torch.randn(19, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = causal_conv_silu(xz[..., :19], weight, bias)
    assert calls == [torch.float32] and y.dtype == torch.bfloat16
    exact = F.silu(causal_depthwise_conv1d(xz[..., :19].detach().double(), weight.detach().double(), bias.double()))
    assert torch.allclose(y.double(), exact, rtol=2 ** -8, atol=1e-6)
    y.float().sum().backward()
    assert xz.grad.dtype == torch.bfloat16 and xz.grad[..., :19].abs().sum() > 0 and weight.grad is not None


def test_kernel_special_values(kernel):
    x = torch.tensor([0.0, 1.0, -200.0, 200.0, float("nan")]).reshape(1, 5, 1)
    weight, bias = torch.tensor([[[0.0, 1.0]]]), torch.zeros(1)  # y_t = silu(x_t)
    y = causal_conv_silu(x, weight, bias).flatten()
    assert y[0] == 0 and torch.isclose(y[1], F.silu(torch.tensor(1.0)))
    assert y[2].abs() < 1e-30 and y[3] == 200.0 and y[4].isnan()  # the limits 0 and x; NaN stays NaN


def test_mamba_runs_the_kernel_on_cpu_float32_with_auto_not_float64_or_torch(kernel, monkeypatch):
    calls = []
    real = conv_kernel.CausalConvSiLU.apply
    monkeypatch.setattr(conv_kernel.CausalConvSiLU, "apply", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 9, 16)
    Mamba(16, backend="auto")(x)
    assert calls == [1]
    Mamba(16, backend="torch")(x)
    Mamba(16, backend="auto").double()(x.double())
    assert calls == [1]


def test_without_the_kernel_it_is_pytorch(monkeypatch):
    monkeypatch.setattr(mamba_mod, "conv_kernel_error", lambda: "turned off by the test")
    x, weight, bias = torch.randn(2, 7, 5), torch.randn(5, 1, 4), torch.randn(5)
    assert torch.equal(causal_conv_silu(x, weight, bias), F.silu(causal_depthwise_conv1d(x, weight, bias)))


def test_a_kernel_that_disagrees_is_not_used(kernel, monkeypatch, request):
    make_kernel_disagree(monkeypatch, request, conv_kernel.KERNEL, conv_kernel.CausalConvSiLU)
    assert "disagrees" in mamba_mod.conv_kernel_error()
    x, weight = torch.randn(2, 7, 5), torch.randn(5, 1, 4)
    assert torch.equal(causal_conv_silu(x, weight), F.silu(causal_depthwise_conv1d(x, weight)))

"""layers/fast_ops.py: the cheaper CPU dropout, attention, GELU and LoRA compute what PyTorch's and peft's do."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import make_kernel_disagree, require_c_kernel
from layers import fast_ops
from layers.ckernel import outputs_and_gradients
from layers.fast_ops import (ATTENTION_NAME, Dropout, ErfGELU, LoraDropout, TanhGELU, attention, dropout, gelu_erf,
                             gelu_tanh)
from layers.llm import load_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dropout_identity_and_bounds():
    x = torch.randn(4, 5)
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    torch.manual_seed(0)
    near_one = dropout(x, 1.0 - 1e-6)  # too close to 1 for 15-bit draws: torch's own dropout
    torch.manual_seed(0)
    assert torch.equal(near_one, F.dropout(x, 1.0 - 1e-6))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            dropout(x, bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_rate_scale_and_mean(dtype, p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last 64-bit draw is only partly used
    y = dropout(torch.ones(n, dtype=dtype), p)
    assert y.dtype == dtype and y.shape == (n,)
    dropped = (y == 0).double().mean().item()
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(dropped - p) < 6 * sigma
    threshold = round(p * 2 ** 15)
    scale = torch.tensor(2 ** 15 / (2 ** 15 - threshold), dtype=dtype)
    assert torch.equal(y[y != 0].unique(), scale.reshape(1))  # kept values scaled exactly
    assert abs(y.double().mean().item() - 1.0) < 6 * sigma * scale.item() + 1e-3


def test_dropout_gradient_uses_the_forward_mask():
    torch.manual_seed(1)
    x = torch.randn(7, 3, 11, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    _, scale = fast_ops._threshold_and_scale(0.3)
    assert torch.allclose(y[y != 0] / x.detach()[y != 0], torch.tensor(scale))
    assert torch.equal(x.grad, torch.where(y == 0, torch.zeros_like(g), g * scale))


def test_dropout_follows_the_torch_seed():
    x = torch.randn(1000)
    torch.manual_seed(5)
    a = dropout(x, 0.2)
    torch.manual_seed(5)
    np.random.seed(123)  # numpy's global state plays no part: the bits come from a generator seeded by torch
    np.random.random(10)
    b = dropout(x, 0.2)
    torch.manual_seed(6)
    c = dropout(x, 0.2)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.fixture
def dropout_kernel():
    require_c_kernel("dropout", fast_ops.kernel_error)


@pytest.fixture(params=["cpu_kernel", "numpy"])
def dropout_path(request, monkeypatch):
    """Each dropout test runs on the C kernel and on the numpy path."""
    if request.param == "numpy":
        monkeypatch.setattr(fast_ops, "kernel_error", lambda: "turned off by the test")
    else:
        request.getfixturevalue("dropout_kernel")
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dropout_is_bitwise_x_times_mask_times_scale(dtype, dropout_path):
    x = torch.randn(3, 5, 7, dtype=dtype, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.1)
    g = torch.randn_like(y)
    y.backward(g)
    torch.manual_seed(3)
    keep = fast_ops._keep_mask(x.shape, 0.1, x.device, fast_ops._draw_seed()).to(dtype)
    _, scale = fast_ops._threshold_and_scale(0.1)
    assert fast_ops.backend(x) == ("numpy" if dtype == torch.float64 else dropout_path)
    assert torch.equal(y, (x.detach() * keep).mul_(scale))  # fp32/fp64's scaled mask rounds the same way
    assert torch.equal(x.grad, (g * keep).mul_(scale))


# Random123's known-answer vectors for Philox4x32-10 (kat_vectors: counter words, key words, output words)
PHILOX4X32_10_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def _philox4x32_10(counter: tuple, key: tuple) -> tuple:
    """One Philox4x32-10 block in Python integers (Salmon et al., SC 2011, section 4), any counter words."""
    m32 = (1 << 32) - 1
    x, (k0, k1) = list(counter), key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * x[0], 0xCD9E8D57 * x[2]
        x = [(p1 >> 32) ^ x[1] ^ k0, p1 & m32, (p0 >> 32) ^ x[3] ^ k1, p0 & m32]
        k0, k1 = (k0 + 0x9E3779B9) & m32, (k1 + 0xBB67AE85) & m32
    return tuple(x)


@pytest.mark.parametrize("counter,key,expected", PHILOX4X32_10_KAT)
def test_philox_reference_matches_random123(counter, key, expected):
    assert _philox4x32_10(counter, key) == expected


def test_numpy_draws_are_the_documented_philox4x32_stream():
    """Block b is Philox4x32-10 of counter (b mod 2^32, b / 2^32, 0, 0) under key (seed mod 2^32, seed / 2^32);
    element 64 g + 8 (2 w + h) + l is the low 15 bits of half h of word w of block 8 g + l (csrc/philox.h)."""
    seed = 2 ** 61 + 12345
    blocks = np.array([0, 1, 7, 2 ** 33 + 5], dtype=np.uint64)  # the last one's counter has a high word
    words = fast_ops._philox4x32_10(blocks, seed)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    for i, b in enumerate(blocks.tolist()):
        assert tuple(int(w) for w in words[:, i]) == _philox4x32_10((b & 0xFFFFFFFF, b >> 32, 0, 0), key)
    draws = fast_ops._philox_draws(200, seed)
    for e in (0, 1, 8, 9, 63, 64, 130, 199):
        g, rest = divmod(e, 64)
        (w, h), lane = divmod(rest // 8, 2), rest % 8
        word = _philox4x32_10((8 * g + lane, 0, 0, 0), key)[w]
        assert draws[e] == (word >> (16 * h)) & 0x7FFF


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_draws_and_reverses_the_numpy_masks(n, threads, monkeypatch, dropout_kernel):
    """Bit for bit, float32 and bfloat16, lengths around its groups of 64 and chunks of 1024, with special
    values, on one or two threads (the split must not change a bit)."""
    monkeypatch.setattr(fast_ops, "threads_for", lambda work: threads)
    g = torch.Generator().manual_seed(n)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-40, 3.0e38, -2.5])
    base = torch.cat([special, torch.randn(n, generator=g) * 100])[:n]
    for dtype in (torch.float32, torch.bfloat16):
        x, grad = base.to(dtype), (torch.randn(n, generator=g) * 1e3).to(dtype)
        results = []
        for use_kernel in (True, False):
            leaf = x.clone().requires_grad_()
            y = fast_ops._KeepScale.apply(leaf, 0.37, 987654321, use_kernel)
            y.backward(grad)
            results.append((y.detach(), leaf.grad))
        (y_k, g_k), (y_n, g_n) = results
        assert torch.equal(y_k.isnan(), y_n.isnan())
        assert torch.equal(y_k.nan_to_num(), y_n.nan_to_num()) and torch.equal(g_k, g_n)


def test_without_a_compiler_dropout_draws_the_same_masks(monkeypatch, tmp_path):
    x = torch.randn(4, 300)
    torch.manual_seed(11)
    expected = dropout(x, 0.2)
    monkeypatch.setenv("CROSSALIGN_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-anywhere")
    fast_ops.KERNEL.reset()
    try:
        assert "no-such-compiler-anywhere" in fast_ops.kernel_error() and fast_ops.backend(x) == "numpy"
        torch.manual_seed(11)
        assert torch.equal(dropout(x, 0.2), expected)
        assert list(tmp_path.iterdir()) == []
    finally:
        fast_ops.KERNEL.reset()  # later tests load it from the normal cache again


def test_a_dropout_kernel_that_disagrees_is_not_used(monkeypatch, request, dropout_kernel):
    right = fast_ops._KeepScale.forward

    def wrong(ctx, x, p, seed, use_kernel):
        return right(ctx, x, p, seed + use_kernel, use_kernel)  # the kernel draws another mask

    monkeypatch.setattr(fast_ops._KeepScale, "forward", staticmethod(wrong))
    fast_ops.KERNEL.reset()  # check again, with the wrong kernel
    request.addfinalizer(fast_ops.KERNEL.reset)  # and with the right one after this test
    assert "disagrees with the numpy Philox path" in fast_ops.kernel_error()
    assert fast_ops.backend(torch.ones(3)) == "numpy"


def test_dropout_modules():
    m = Dropout(0.25)
    assert isinstance(m, nn.Dropout) and m.p == 0.25
    x = torch.randn(100, 10)
    assert not torch.equal(m(x), x)
    assert m.backend_used == fast_ops.backend(x)
    m.eval()
    assert m(x) is x
    lora = LoraDropout(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lora(x).dtype == torch.bfloat16  # cast first: lora_A's matmul would cast anyway
    assert lora(x).dtype == torch.float32


def _qkv(dtype, b=2, h=3, t=9, s=13, e=8, seed=0):
    torch.manual_seed(seed)
    return [torch.randn(b, h, n, e, dtype=dtype, requires_grad=True) for n in (t, s, s)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "bool", "additive", "causal+additive", "shared_kv"])
def test_attention_matches_sdpa_with_gradients(dtype, tol, mask_kind):
    q, k, v = _qkv(dtype)
    mask = None
    if mask_kind == "shared_kv":  # keys/values broadcast over the batch, as MultiHeadAttention's memory retrieval
        k, v = (x.detach()[:1].requires_grad_() for x in (k, v))
    if mask_kind == "bool":
        mask = torch.rand(9, 13) > 0.3
        mask[:, 0] = True  # no fully masked row
    elif mask_kind.endswith("additive"):
        mask = torch.randn(2, 1, 9, 13, dtype=dtype)
    causal = mask_kind.startswith("causal")
    # dropout 0 in bf16 takes our unfused path (with gradients); fp32 goes through SDPA itself
    ours = attention(q, k, v, mask, is_causal=causal, scale=0.3)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=0.3)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    assert ours.dtype == dtype and ours.shape == ref.shape
    assert torch.allclose(ours.float(), ref.float(), atol=tol, rtol=tol)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a.float(), b.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_with_dropout_is_softmax_dropped_times_v(causal):
    q, k, v = _qkv(torch.float32, t=6, s=6)
    torch.manual_seed(11)
    out = attention(q, k, v, dropout_p=0.2, is_causal=causal)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    torch.manual_seed(11)  # the only random draw is the mask of the attention weights
    scores = (q @ k.transpose(-2, -1)) / 8 ** 0.5
    if causal:
        scores = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    keep = fast_ops._keep_mask(torch.Size((2, 3, 6, 6)), 0.2, q.device, fast_ops._draw_seed())
    _, scale = fast_ops._threshold_and_scale(0.2)
    expected = torch.softmax(scores, -1) * keep * scale @ v
    assert torch.allclose(out, expected, atol=1e-6)
    for a, b in zip(grads, torch.autograd.grad(expected, (q, k, v), g)):
        assert torch.allclose(a, b, atol=1e-5)


def test_attention_without_gradients_is_sdpa():
    q, k, v = _qkv(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(attention(q, k, v, is_causal=True),
                           F.scaled_dot_product_attention(q, k, v, is_causal=True))


def _tiny(tmp_path, kind: str, drop: float) -> str:
    from transformers import GPT2Config, LlamaConfig
    if kind == "gpt2":
        cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64,
                         resid_pdrop=drop, attn_pdrop=drop, embd_pdrop=drop)
    else:
        cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=100, attention_dropout=drop)
    folder = tmp_path / kind
    cfg.save_pretrained(str(folder))
    return str(folder)


def test_install_replaces_every_dropout_and_the_attention(tmp_path):
    bb = load_backbone(_tiny(tmp_path, "gpt2", 0.1), 2, init="random", lora_dropout=0.1)
    kinds = [type(m) for m in bb.modules()]
    assert nn.Dropout not in kinds
    assert LoraDropout in kinds and Dropout in kinds
    assert bb.base.config._attn_implementation == ATTENTION_NAME
    assert all(not layer.cast_input_dtype_enabled for layer in bb.modules() if hasattr(layer, "lora_A"))
    from transformers.activations import GELUTanh
    assert GELUTanh not in kinds and kinds.count(TanhGELU) == 2  # GPT-2's activation, one per block


@pytest.fixture
def gelu_kernel():
    require_c_kernel("GELU", fast_ops.gelu_kernel_error)


# form, module, range, largest error against float64 forward and for the gradient (per unit of g): about
# PyTorch's float32 kernels' (tanh: 4.3e-7 and 1e-6; erf: 3.7e-7 and 2.6e-7 for the derivative)
GELU_FORMS = [("tanh", TanhGELU, 12.0, 1e-6, 4e-6), ("none", ErfGELU, 20.0, 6e-7, 6e-7)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("approximate, module_type, reach, forward_tol, grad_tol", GELU_FORMS)
def test_gelu_kernel_is_the_function_and_its_derivative(threads, approximate, module_type, reach, forward_tol,
                                                        grad_tol, monkeypatch, gelu_kernel):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the kernel's own split: threads_for
    torch.manual_seed(0)
    # a length that ends inside a vector of 8 (and a block of 4), the range where the function bends, far tails
    x = torch.cat([torch.linspace(-reach, reach, 240_003), torch.randn(1_000) * 30])
    leaf = x.clone().requires_grad_()
    module = module_type()
    y = module(leaf)
    assert type(y.grad_fn).__name__ == "_GeluBackward" and module.backend_used == "cpu_kernel"
    g = torch.randn_like(x)
    (grad,) = torch.autograd.grad(y, leaf, g)
    exact = x.double().requires_grad_()
    ref = F.gelu(exact, approximate=approximate)
    (ref_grad,) = torch.autograd.grad(ref, exact, g.double())
    assert (y.double() - ref.detach()).abs().max() < forward_tol
    assert (grad.double() - ref_grad).abs().max() < grad_tol * g.abs().max()
    assert torch.allclose(y, F.gelu(x, approximate=approximate), rtol=1e-5, atol=1e-6)


def test_gelu_tanh_special_values(gelu_kernel):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30], requires_grad=True)
    y = gelu_tanh(x)
    y.backward(torch.ones_like(y))
    assert y[0].isnan() and y[1] == float("inf") and y[2] == -float("inf")  # the limits (PyTorch: NaN at -inf)
    assert y[3:].abs().max() < 1e-29
    assert x.grad[0].isnan() and x.grad[1] == 1.0 and x.grad[2].abs() < 1e-30
    assert torch.allclose(x.grad[3:], torch.full((3,), 0.5))  # gelu'(0) = 1/2


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("approximate, module_type, reach, forward_tol, grad_tol", GELU_FORMS)
def test_gelu_kernel_in_bfloat16_is_the_function_rounded_to_bfloat16(threads, approximate, module_type, reach,
                                                                    forward_tol, grad_tol, monkeypatch, gelu_kernel):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    torch.manual_seed(0)
    x = torch.cat([torch.linspace(-reach, reach, 24_003), torch.randn(1_000) * 30]).bfloat16()
    leaf = x.clone().requires_grad_()
    module = module_type()
    y = module(leaf)
    assert y.dtype == torch.bfloat16 and module.backend_used == "cpu_kernel"
    g = torch.randn(x.shape).bfloat16()
    (grad,) = torch.autograd.grad(y, leaf, g)
    assert grad.dtype == torch.bfloat16
    exact = x.double().requires_grad_()
    ref = F.gelu(exact, approximate=approximate)
    (ref_grad,) = torch.autograd.grad(ref, exact, g.double())
    # the float32 function rounded once (one bf16 step, 2^-8 relative); the gradient rounds the kept derivative
    # and then the product (two steps; PyTorch's bf16 backward rounds once); plus the float32 kernel's error
    assert ((y.double() - ref.detach()).abs() <= 2 ** -8 * ref.detach().abs() + forward_tol).all()
    assert ((grad.double() - ref_grad).abs() <= 2 ** -7 * ref_grad.abs() + grad_tol * g.double().abs()).all()
    torch_y = F.gelu(x, approximate=approximate)
    assert torch.allclose(y.float(), torch_y.float(), rtol=2 ** -8, atol=1e-6)


def test_gelu_kernel_runs_in_a_bf16_autocast_training_step(tmp_path, gelu_kernel):
    # --bf16 1: the MLP's first product comes out of autocast in bf16, so its GELU gets a bf16 tensor
    bb = load_backbone(_tiny(tmp_path, "gpt2", 0.1), 2, init="random", lora_dropout=0.1)
    x = torch.randn(2, 8, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = bb(x, adapters=True)
    out.float().square().mean().backward()
    gelus = [m for m in bb.modules() if isinstance(m, TanhGELU)]
    assert len(gelus) == 2 and all(m.backend_used == "cpu_kernel" for m in gelus)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bb.parameters() if p.requires_grad)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_kernel_in_bfloat16_special_values(approximate, gelu_kernel):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30], dtype=torch.bfloat16,
                     requires_grad=True)
    y = fast_ops._Gelu.apply(x, approximate)
    y.backward(torch.ones_like(y))
    assert y[0].isnan() and y[1] == float("inf") and x.grad[0].isnan()
    assert y[2] == -float("inf") if approximate == "tanh" else y[2].isnan()  # as the float32 kernel
    assert y[3:].abs().max() < 1e-29 and torch.equal(x.grad[3:], torch.full((3,), 0.5, dtype=torch.bfloat16))


def test_gelu_tanh_is_pytorchs_outside_float32_and_bfloat16():
    x = torch.randn(257, dtype=torch.float64)
    assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))
    module = TanhGELU()
    assert torch.equal(module(x), F.gelu(x, approximate="tanh")) and module.backend_used == "torch"


def test_gelu_tanh_without_its_kernel_is_pytorchs(monkeypatch):
    monkeypatch.setattr(fast_ops, "gelu_kernel_error", lambda: "turned off by the test")
    x = torch.randn(3, 1001)
    assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))


def test_a_gelu_kernel_that_disagrees_is_not_used(monkeypatch, request, gelu_kernel):
    make_kernel_disagree(monkeypatch, request, fast_ops.GELU_KERNEL, fast_ops._Gelu)
    assert "disagrees" in fast_ops.gelu_kernel_error()
    x = torch.randn(100)
    assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))
    assert torch.equal(gelu_erf(x), F.gelu(x))


def test_gelu_erf_kernel_keeps_the_left_tail(gelu_kernel):
    # the left tail as erfc / 2, not 1 + erf(x / sqrt 2), which cancels to 0 below about -5.5 in float32 (and
    # below -8.3 in float64: the reference is the erfc form in float64)
    x = torch.linspace(-9.0, -4.0, 5001)
    y = gelu_erf(x).double()
    ref = 0.5 * x.double() * torch.special.erfc(-x.double() / math.sqrt(2))
    assert ((y - ref) / ref).abs().max() < 2e-2  # A&S 7.1.26: 1.5e-7 absolute


def test_gelu_erf_special_values(gelu_kernel):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30], requires_grad=True)
    y = gelu_erf(x)
    y.backward(torch.ones_like(y))
    torch_y = F.gelu(x.detach())
    assert y[0].isnan() and y[1] == float("inf") and y[2].isnan() and torch_y[2].isnan()  # as PyTorch's
    assert y[3:].abs().max() < 1e-29
    assert x.grad[:3].isnan().all()  # as PyTorch's
    assert torch.allclose(x.grad[3:], torch.full((3,), 0.5))  # gelu'(0) = 1/2


def test_gelu_erf_is_pytorchs_outside_float32_and_bfloat16():
    x = torch.randn(257, dtype=torch.float64)
    assert torch.equal(gelu_erf(x), F.gelu(x))
    module = ErfGELU()
    assert torch.equal(module(x), F.gelu(x)) and module.backend_used == "torch"


def test_install_swaps_berts_gelu_for_the_kernel():
    from transformers import BertConfig, BertModel
    from transformers.activations import GELUActivation
    bert = BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                                hidden_act="gelu"))
    kinds = [type(m) for m in fast_ops.install(bert).modules()]
    assert GELUActivation not in kinds and kinds.count(ErfGELU) == 2  # one per block
    python_form = nn.Sequential(GELUActivation(use_gelu_python=True), nn.GELU(approximate="tanh"), nn.GELU())
    kinds = [type(m) for m in fast_ops.install(python_form).children()]
    assert kinds == [GELUActivation, nn.GELU, ErfGELU]  # only F.gelu's erf form is swapped


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_backbone_with_fast_ops_matches_native_sdpa(tmp_path, kind):
    """Same outputs and gradients as transformers' own SDPA attention (no dropout, so both are deterministic)."""
    torch.manual_seed(0)
    bb = load_backbone(_tiny(tmp_path, kind, 0.0), 2, init="random", lora_dropout=0.0)
    for p in bb.parameters():  # LoRA B starts at zero; make the adapters matter
        if p.requires_grad:
            nn.init.normal_(p, std=0.1)
    bb.train()
    h = torch.randn(3, 10, 32, requires_grad=True)

    def run(implementation: str, bf16: bool):
        bb.base.config._attn_implementation = implementation
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = bb(h, adapters=True).float()
        grads = torch.autograd.grad(out.square().sum(), [h] + [p for p in bb.parameters() if p.requires_grad])
        return out, grads

    for bf16, tol in ((False, 1e-5), (True, 5e-2)):
        ours, ours_grads = run(ATTENTION_NAME, bf16)
        ref, ref_grads = run("sdpa", bf16)
        assert torch.allclose(ours, ref, atol=tol, rtol=tol)
        for a, b in zip(ours_grads, ref_grads):
            assert torch.allclose(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_attention_grouped_key_value_heads(dtype, tol):
    torch.manual_seed(2)
    q = torch.randn(2, 4, 7, 8, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(2, 2, 7, 8, dtype=dtype, requires_grad=True) for _ in range(2))
    ours = attention(q, k, v, is_causal=True, enable_gqa=True)
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), is_causal=True)
    assert torch.allclose(ours.float(), ref.float(), atol=tol, rtol=tol)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        assert torch.allclose(a.float(), b.float(), atol=tol, rtol=tol)


def _lora_layers(bb) -> list:
    from peft.tuners.lora.layer import Linear as LoraLinear
    return [m for m in bb.modules() if type(m) is LoraLinear]


def test_install_routes_every_lora_linear_through_lora_forward(tmp_path):
    bb = load_backbone(_tiny(tmp_path, "gpt2", 0.1), 2, init="random")
    layers = _lora_layers(bb)
    assert len(layers) == 2 * 4  # c_attn, attention c_proj, c_fc, MLP c_proj per block
    assert all(layer.forward.__func__ is fast_ops.lora_forward for layer in layers)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("bf16", [False, True])
def test_lora_forward_matches_peft_forward_with_gradients(tmp_path, kind, bf16):
    """One addmm in place of peft's product, scaling and sum: the same output and gradients (GPT-2's
    Conv1D base with fan_in_fan_out, Llama's nn.Linear), in fp32 and under bf16 autocast."""
    from peft.tuners.lora.layer import Linear as LoraLinear
    torch.manual_seed(0)
    bb = load_backbone(_tiny(tmp_path, kind, 0.0), 2, init="random", lora_dropout=0.0)
    for p in bb.parameters():  # LoRA B starts at zero; make the adapters matter
        if p.requires_grad:
            nn.init.normal_(p, std=0.1)
    h = torch.randn(3, 10, 32, requires_grad=True)
    params = [h] + [p for p in bb.parameters() if p.requires_grad]

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = bb(h, adapters=True).float()
        return out, torch.autograd.grad(out.square().sum(), params)

    ours, ours_grads = run()
    for layer in _lora_layers(bb):
        layer.forward = LoraLinear.forward.__get__(layer)  # peft's own
    ref, ref_grads = run()
    tol = 3e-2 if bf16 else 1e-5
    assert torch.allclose(ours, ref, atol=tol, rtol=tol)
    for a, b in zip(ours_grads, ref_grads):
        assert torch.allclose(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=tol)


def test_lora_forward_under_autocast_casts_its_input_once(tmp_path, monkeypatch):
    """--bf16 1: a float32 input is cast once for the base product and the adapter, and the dropout runs in bf16
    (autocast would cast it for the base, run the dropout in float32, then cast the dropped copy again)."""
    bb = load_backbone(_tiny(tmp_path, "gpt2", 0.1), 1, init="random", lora_dropout=0.1)
    layer = _lora_layers(bb)[0]
    seen = []
    drop = layer.lora_dropout["default"]
    monkeypatch.setattr(drop, "forward", lambda x, real=drop.forward: seen.append(x.dtype) or real(x))
    x = torch.randn(2, 5, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    y.float().sum().backward()
    assert seen == [torch.bfloat16] and y.dtype == torch.bfloat16 and x.grad.dtype == torch.float32
    assert layer.backend_used == "torch"


def test_lora_forward_leaves_disabled_merged_and_extra_adapters_to_peft(tmp_path):
    torch.manual_seed(0)
    bb = load_backbone(_tiny(tmp_path, "gpt2", 0.0), 1, init="random", lora_dropout=0.0)
    layer = _lora_layers(bb)[0]
    nn.init.normal_(layer.lora_B["default"].weight, std=0.1)
    x = torch.randn(2, 5, 32)
    base, full = layer.base_layer(x), layer(x)
    assert not torch.allclose(full, base)
    with bb.adapters_disabled():  # the frozen teacher: the base layer alone
        assert torch.equal(layer(x), base)
    layer.merge()
    assert torch.allclose(layer(x), full, atol=1e-5)  # merged weights: peft's path, same values
    layer.unmerge()
    assert torch.allclose(layer(x), full, atol=1e-5)
    assert fast_ops._plain_adapter(layer) == "default"
    layer.active_adapters.append("default")  # the same adapter twice: peft adds it twice
    assert fast_ops._plain_adapter(layer) is None


@pytest.fixture
def lora_kernel():
    require_c_kernel("LoRA", fast_ops.lora_kernel_error)


def _unfused_lora(x, weight, bias, lora_a, lora_b, scaling, p, seed):
    dropped = fast_ops._KeepScale.apply(x, p, seed, False) if p else x  # the numpy Philox mask
    return F.linear(x, weight, bias) + scaling * F.linear(F.linear(dropped, lora_a), lora_b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m,n_in,n_out,r", [(3200 // 50, 384, 384, 8), (37, 45, 29, 1), (9, 16, 70, 5),
                                            (130, 100, 24, 16)])
@pytest.mark.parametrize("p", [0.0, 0.1])
def test_lora_kernel_is_the_unfused_computation(m, n_in, n_out, r, p, threads, monkeypatch, lora_kernel):
    """Rows that end inside a group of four, widths inside a vector, ranks outside groups of two and one or
    two threads: the same output and gradients as the three products with the same dropout mask."""
    monkeypatch.setattr(fast_ops, "threads_for", lambda work: threads)
    g = torch.Generator().manual_seed(m + r)
    tensors = [torch.randn(*shape, generator=g) for shape in ((m, n_in), (n_out, n_in), (n_out,), (r, n_in),
                                                              (n_out, r))]
    grad = torch.randn(m, n_out, generator=g)
    results = [outputs_and_gradients(lambda *t: fn(*t, 2.0, p, 1234), tensors, grad)
               for fn in (fast_ops._LoraLinear.apply, _unfused_lora)]
    for ours, ref in zip(*results):
        assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_lora_kernel_without_gradients_and_with_a_frozen_base(lora_kernel):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(10, 12), torch.randn(7, 12), torch.randn(7)
    lora_a, lora_b = torch.randn(3, 12, requires_grad=True), torch.randn(7, 3, requires_grad=True)
    with torch.inference_mode():
        assert torch.allclose(fast_ops._LoraLinear.apply(x, weight, bias, lora_a, lora_b, 0.5, 0.2, 9),
                              _unfused_lora(x, weight, bias, lora_a, lora_b, 0.5, 0.2, 9), atol=1e-5)
    out = fast_ops._LoraLinear.apply(x, weight, None, lora_a, lora_b, 0.5, 0.2, 9)  # only the adapter trains
    out.square().sum().backward()
    ref_a, ref_b = lora_a.detach().requires_grad_(), lora_b.detach().requires_grad_()
    _unfused_lora(x, weight, None, ref_a, ref_b, 0.5, 0.2, 9).square().sum().backward()
    for ours, ref in ((lora_a.grad, ref_a.grad), (lora_b.grad, ref_b.grad)):
        assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_lora_forward_with_dropout_is_the_unfused_path(tmp_path, kind, monkeypatch, lora_kernel):
    """In training with LoRA dropout, the kernel path draws the same seeds from torch's generator as the
    unfused path (LoraDropout, then addmm) and gives the same outputs and gradients."""
    bb = load_backbone(_tiny(tmp_path, kind, 0.0), 2, init="random", lora_dropout=0.3)
    bb.train()
    for p in bb.parameters():
        if p.requires_grad:
            nn.init.normal_(p, std=0.1)
    h = torch.randn(3, 10, 32, requires_grad=True)
    params = [h] + [p for p in bb.parameters() if p.requires_grad]

    def run():
        torch.manual_seed(5)
        out = bb(h, adapters=True)
        return out, torch.autograd.grad(out.square().sum(), params)

    ours, ours_grads = run()
    assert {layer.backend_used for layer in _lora_layers(bb)} == {"lora_cpu_kernel"}
    monkeypatch.setattr(fast_ops, "_fused_lora_dropout", lambda *args: None)
    ref, ref_grads = run()
    assert {layer.backend_used for layer in _lora_layers(bb)} == {"torch"}
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(ours_grads, ref_grads):
        assert torch.allclose(a, b, atol=1e-5 * max(1.0, b.abs().max().item()), rtol=1e-5)


def test_lora_kernel_is_left_out_where_it_does_not_apply(tmp_path, monkeypatch, lora_kernel):
    bb = load_backbone(_tiny(tmp_path, "llama", 0.0), 1, init="random", lora_dropout=0.1)
    bb.train()
    layer = _lora_layers(bb)[0]
    x = torch.randn(2, 5, 32)
    assert fast_ops._fused_lora_dropout(layer, "default", x) == 0.1
    assert fast_ops._fused_lora_dropout(layer, "default", x.double()) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast_ops._fused_lora_dropout(layer, "default", x) is None
    layer.lora_dropout["default"].p = 1e-6  # too fine for 15-bit draws: dropout() runs F.dropout
    assert fast_ops._fused_lora_dropout(layer, "default", x) is None
    bb.eval()
    assert fast_ops._fused_lora_dropout(layer, "default", x) == 0.0  # no dropout in evaluation
    monkeypatch.setattr(fast_ops, "lora_kernel_error", lambda: "turned off by the test")
    assert fast_ops._fused_lora_dropout(layer, "default", x) is None
    layer(x)
    assert layer.backend_used == "torch"


def test_a_lora_kernel_that_disagrees_is_not_used(monkeypatch, request, lora_kernel):
    make_kernel_disagree(monkeypatch, request, fast_ops.LORA_KERNEL, fast_ops._LoraLinear)
    assert "disagrees" in fast_ops.lora_kernel_error()


@pytest.mark.parametrize("n_in, n_out", [(8, 256), (38, 128), (1, 5)])
def test_narrow_linear_is_f_linear(n_in, n_out):
    torch.manual_seed(0)
    x = torch.randn(4, 50, n_in)[:, ::2]  # a strided input, as Mamba's split of x_proj's output
    w, b, g = torch.randn(n_out, n_in), torch.randn(n_out), torch.randn(4, 25, n_out)
    ours = outputs_and_gradients(fast_ops.linear, [x, w, b], g)
    theirs = outputs_and_gradients(F.linear, [x, w, b], g)
    for a, ref in zip(ours, theirs):
        assert a.shape == ref.shape and torch.allclose(a, ref, rtol=1e-5, atol=1e-5)
    layer = fast_ops.Linear(n_in, n_out)
    assert type(layer(x.requires_grad_()).grad_fn).__name__ == "_NarrowLinearBackward"
    nn.Linear(n_in, n_out).load_state_dict(layer.state_dict())  # strict: raises unless it is nn.Linear's state dict


def test_linear_is_f_linear_where_its_products_would_not_pay():
    torch.manual_seed(0)
    x, w, b = torch.randn(10, 64, requires_grad=True), torch.randn(32, 64), torch.randn(32)
    assert type(fast_ops.linear(x, w, b).grad_fn).__name__ == "AddmmBackward0"  # 64 inputs: not narrow
    x8, w8 = torch.randn(10, 8), torch.randn(32, 8)
    assert fast_ops.linear(x8, w8).grad_fn is None  # nothing needs a gradient
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast_ops.linear(x8.requires_grad_(), w8).dtype == torch.bfloat16  # autocast's own linear
    assert torch.equal(fast_ops.linear(x8.double(), w8.double()), F.linear(x8.double(), w8.double()))

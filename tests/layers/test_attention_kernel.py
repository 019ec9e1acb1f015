"""layers/csrc/attention.c through fast_ops.attention: PyTorch's attention, forward and backward, in one kernel."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import make_kernel_disagree, require_c_kernel
from layers import fast_ops
from layers.ckernel import largest_relative_difference, outputs_and_gradients
from layers.fast_ops import attention, attention_backend

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def kernel():
    require_c_kernel("attention", fast_ops.attention_kernel_error)


def _heads(b, h, t, s, e, ev, seed=0, layout="projection"):
    """q, k, v as ``[B, H, n, E]``: views of ``[B, n, H, E]`` (as a projection gives them) or contiguous."""
    g = torch.Generator().manual_seed(seed)
    if layout == "projection":
        return [torch.randn(b, n, h, d, generator=g).transpose(1, 2) for n, d in ((t, e), (s, e), (s, ev))]
    return [torch.randn(b, h, n, d, generator=g) for n, d in ((t, e), (s, e), (s, ev))]


def _reference(q, k, v, causal, scale):
    """float64 SDPA, the exact computation the kernel rounds"""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


SHAPES = [  # (B, H, T, S, E, Ev): widths ending inside a vector, rows inside a tile, queries over two blocks
    (2, 3, 13, 11, 5, 9), (1, 2, 250, 37, 20, 12), (2, 2, 100, 100, 32, 32), (1, 1, 1, 1, 1, 1), (1, 2, 7, 40, 16, 8)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("layout", ["projection", "contiguous"])
def test_matches_float64_sdpa_with_gradients(kernel, shape, causal, layout):
    q, k, v = _heads(*shape, layout=layout)
    grad = torch.randn(shape[0], shape[1], shape[2], shape[5])
    assert attention_backend(q, k, v) == "cpu_kernel"
    ours = outputs_and_gradients(lambda *x: attention(*x, is_causal=causal, scale=0.3), [q, k, v], grad)
    ref = outputs_and_gradients(lambda *x: _reference(*x, causal, 0.3), [x.double() for x in (q, k, v)],
                                grad.double())
    assert all(a.dtype == torch.float32 and a.shape == b.shape for a, b in zip(ours, ref))
    assert largest_relative_difference(ours, [r.float() for r in ref]) < 2e-6


@pytest.mark.parametrize("causal", [False, True])
def test_dropout_drops_the_weights_the_unfused_path_drops(kernel, causal):
    q, k, v = _heads(2, 3, 130, 19, 12, 8)
    grad = torch.randn(2, 3, 130, 8)
    results = []
    for fn in (lambda *x: attention(*x, dropout_p=0.2, is_causal=causal),
               lambda *x: fast_ops._unfused_attention(*x, None, 0.2, causal, None, False)):
        torch.manual_seed(4)  # the mask's seed comes from torch's generator in both
        results.append(outputs_and_gradients(fn, [q, k, v], grad))
    assert largest_relative_difference(*results) < 1e-6
    assert not torch.allclose(attention(q, k, v, is_causal=causal), results[0][0])  # the dropout did drop


def test_inference_threads_and_training_give_the_same_output(kernel):
    q, k, v = _heads(2, 4, 100, 100, 32, 32)
    with torch.no_grad():
        inference = attention(q, k, v, is_causal=True)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    training = attention(*leaves, is_causal=True)
    torch.set_num_threads(2)
    try:
        two_threads = outputs_and_gradients(lambda *x: attention(*x, is_causal=True), [q, k, v], torch.ones_like(q))
    finally:
        torch.set_num_threads(1)
    one_thread = outputs_and_gradients(lambda *x: attention(*x, is_causal=True), [q, k, v], torch.ones_like(q))
    assert torch.equal(inference, training.detach())
    assert all(torch.equal(a, b) for a, b in zip(one_thread, two_threads))


def test_output_merges_heads_without_a_copy(kernel):
    q, k, v = _heads(2, 3, 9, 9, 8, 8)
    out = attention(q, k, v)
    assert out.shape == (2, 3, 9, 8) and out.transpose(1, 2).is_contiguous()


def test_special_values_stay_in_their_rows(kernel):
    q, k, v = _heads(1, 2, 6, 6, 8, 8, layout="contiguous")
    q[0, 0, 2, 3] = float("nan")
    k[0, 1, 4, 0] = 1e4  # one huge score per row of head 1: the softmax subtracts the row's largest
    ours, ref = attention(q, k, v), _reference(q.double(), k.double(), v.double(), False, None)
    assert torch.isnan(ours[0, 0, 2]).all() and not torch.isnan(ours[0, 0, [0, 1, 3, 4, 5]]).any()
    finite = ~torch.isnan(ref)
    assert torch.allclose(ours[finite].double(), ref[finite], atol=1e-5)


def test_other_inputs_take_pytorchs_attention(kernel):
    q, k, v = _heads(2, 3, 5, 5, 8, 8)
    assert attention_backend(q, k, v, attn_mask=torch.ones(5, 5, dtype=torch.bool)) == "torch"
    assert attention_backend(*(x.bfloat16() for x in (q, k, v))) == "torch"
    assert attention_backend(q, k[:1], v[:1]) == "torch"  # keys shared by the batch: broadcast
    assert attention_backend(q, k, v, dropout_p=1e-6) == "torch"  # below what 15-bit draws express
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention_backend(q, k, v) == "torch"
    assert attention_backend(q[0], k[0], v[0]) == "torch"  # 3-D


def test_an_attention_kernel_that_disagrees_is_not_used(monkeypatch, request, kernel):
    make_kernel_disagree(monkeypatch, request, fast_ops.ATTENTION_KERNEL, fast_ops._FusedAttention)
    assert "disagrees" in fast_ops.attention_kernel_error()
    q, k, v = _heads(1, 2, 5, 5, 8, 8)
    assert attention_backend(q, k, v) == "torch"


def test_the_saved_softmax_rows_match_the_kernels_vector_width():
    """fast_ops allocates the saved softmax with rows of whole vectors of csrc/vecmath.h's W floats, which the
    kernel writes whole: the two widths must agree."""
    header = (Path(fast_ops.__file__).parent / "csrc" / "vecmath.h").read_text()
    assert int(re.search(r"^#define W (\d+)$", header, re.M).group(1)) == fast_ops._KERNEL_LANES

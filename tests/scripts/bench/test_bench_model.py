"""scripts.bench.model's roofline: FLOP counts of tiny steps against hand counts, the floor arithmetic, the table."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import require_c_kernel
from scripts.bench import model as bm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

pytestmark = pytest.mark.usefixtures("one_thread")
M, K, N = 8, 16, 4


def _linear_step(weight_grad: bool, input_grad: bool) -> dict[str, int]:
    torch.manual_seed(0)
    lin = torch.nn.Linear(K, N, bias=False).requires_grad_(weight_grad)
    x = torch.randn(M, K, requires_grad=input_grad)
    return bm.count_flops(lambda: lin(x).sum().backward())


def test_linear_step_counts_forward_and_the_gradients_that_are_needed():
    mkn = 2 * M * K * N
    assert sum(_linear_step(weight_grad=True, input_grad=True).values()) == 3 * mkn  # forward, grad-input, grad-weight
    assert sum(_linear_step(weight_grad=False, input_grad=True).values()) == 2 * mkn  # frozen weight: no grad-weight
    assert sum(_linear_step(weight_grad=True, input_grad=False).values()) == 2 * mkn  # first layer: no grad-input


def test_bias_adds_no_matmul_flops():
    lin = torch.nn.Linear(K, N)
    x = torch.randn(M, K, requires_grad=True)
    counts = bm.count_flops(lambda: lin(x).sum().backward())
    assert "addmm" in counts and sum(counts.values()) == 3 * 2 * M * K * N


def test_the_lora_kernels_base_product_is_counted():
    """_LoraLinear's base product is an in-place addmm_, which FlopCounterMode alone does not count."""
    from layers import fast_ops
    require_c_kernel("LoRA", fast_ops.lora_kernel_error)
    x = torch.randn(M, K, requires_grad=True)
    weight, bias = torch.randn(N, K), torch.randn(N)
    lora_a, lora_b = torch.randn(4, K, requires_grad=True), torch.randn(N, 4, requires_grad=True)
    counts = bm.count_flops(lambda: fast_ops._LoraLinear.apply(x, weight, bias, lora_a, lora_b, 2.0, 0.0, 0).sum()
                            .backward())
    assert counts.get("addmm_") == 2 * M * K * N  # the forward; grad-input is an mm, the frozen weight has none
    assert sum(counts.values()) == 2 * 2 * M * K * N


def test_sdpa_flops_by_hand():
    q, kv = (2, 3, 5, 4), (2, 3, 7, 4)  # batch 2, 3 heads, 5 queries, 7 keys, head dim 4
    one_matmul = 2 * 2 * 3 * 5 * 7 * 4
    assert bm.sdpa_flops(q, kv, kv) == 2 * one_matmul  # Q K^T, P V
    assert bm.sdpa_flops(q, kv, kv, backward=True) == 5 * one_matmul  # Q K^T again, dV, dP, dQ, dK


def test_cpu_fused_attention_is_counted():
    """FlopCounterMode alone counts nothing for CPU's flash attention; count_flops adds our formula."""
    q, k, v = (torch.randn(2, 3, n, 4, requires_grad=True) for n in (5, 7, 7))
    counts = bm.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    expected = bm.sdpa_flops(q.shape, k.shape, v.shape) + bm.sdpa_flops(q.shape, k.shape, v.shape, backward=True)
    assert sum(counts.values()) == expected
    assert any("flash_attention_for_cpu" in op for op in counts)  # the fused path, not a math fallback's bmm


@pytest.mark.parametrize("groups", [1, 8])
def test_convolution_step_respects_groups(groups):
    conv = torch.nn.Conv1d(8, 8, kernel_size=3, groups=groups, padding=2)  # groups=8: depthwise, as in Mamba
    x = torch.randn(2, 8, 10, requires_grad=True)
    forward = 2 * 2 * 12 * 3 * 8 * (8 // groups)  # batch x output points x taps x out channels x in channels/group
    assert bm.conv_flops(x.shape, conv.weight.shape, (2, 8, 12)) == forward
    assert sum(bm.count_flops(lambda: conv(x).sum().backward()).values()) == 3 * forward


def test_gemm_pass_flops_of_a_gpt2_block():
    assert bm.gemm_shapes(3200) == [(3200, 768, 2304), (3200, 768, 768), (3200, 768, 3072), (3200, 3072, 768)]
    assert bm.gemm_pass_flops(bm.gemm_shapes(3200)) == 3 * 2 * 3200 * 768 * (2304 + 768 + 3072 + 3072)


def test_block_dims_reads_the_backbone_config():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model
    wrapper = torch.nn.Sequential(torch.nn.Linear(2, 3), GPT2Model(GPT2Config(n_layer=1, n_embd=64, n_head=4)))
    assert bm.block_dims(wrapper) == (64, 256)  # GPT-2: n_inner unset -> 4 x hidden
    bert = BertModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=48))
    assert bm.block_dims(bert) == (32, 48)
    assert bm.block_dims(torch.nn.Linear(2, 3)) == (768, 3072)  # no transformer blocks: GPT-2's as the reference


def test_gemm_rate_runs_the_flops_it_divides_by():
    operands = bm.gemm_operands(8, d_model=16, d_ff=32)
    assert set(operands) == {"fp32", "bf16"} and operands["bf16"][0][0].dtype == torch.bfloat16
    for xwg in operands.values():
        rates = []
        counted = bm.count_flops(lambda: rates.append(bm.gemm_rate(xwg)))
        assert sum(counted.values()) == bm.gemm_pass_flops(bm.gemm_shapes(8, d_model=16, d_ff=32))
        assert rates[0] > 0


def test_gemm_operands_only_in_the_precisions_asked_for():
    operands = bm.gemm_operands(8, d_model=16, d_ff=32, precisions=("fp32",))
    assert set(operands) == {"fp32"} and operands["fp32"][0][0].dtype == torch.float32


@pytest.mark.parametrize("native", [True, None])
def test_configs_default_to_all_where_bf16_matmuls_are_fast_or_unknown(monkeypatch, native):
    monkeypatch.setattr("utils.provenance.cpu_bf16_native", lambda: native)
    assert bm.config_names(None) == (list(bm.CONFIGS), None)
    assert bm.config_names("crossalign_bf16, gpt2_fp32") == (["crossalign_bf16", "gpt2_fp32"], None)


def test_unknown_configs_name_the_choices_and_exit_2(capsys):
    with pytest.raises(ValueError, match=r"unknown --configs \['gpt3_fp32'\]; choose from crossalign_fp32"):
        bm.config_names("crossalign_fp32,gpt3_fp32")
    import argparse
    parser = argparse.ArgumentParser()
    bm.add_args(parser)
    assert bm.main(parser.parse_args(["--configs", "gpt3_fp32"])) == 2
    assert "error: unknown --configs ['gpt3_fp32']" in capsys.readouterr().err


def test_configs_default_skips_bf16_on_a_cpu_without_fast_bf16_matmuls(monkeypatch):
    monkeypatch.setattr("utils.provenance.cpu_bf16_native", lambda: False)
    names, note = bm.config_names(None)
    assert names == ["crossalign_fp32", "gpt2_fp32"]
    assert "skipped crossalign_bf16, gpt2_bf16" in note and "--configs" in note
    names, note = bm.config_names(None, ("crossalign_fp32", "crossalign_bf16"))  # ab's default
    assert names == ["crossalign_fp32"] and "skipped crossalign_bf16:" in note
    names, note = bm.config_names("crossalign_bf16")  # named explicitly: timed, with the note
    assert names == ["crossalign_bf16"] and note.startswith("note: ") and "no fast bf16 matmul" in note
    assert bm.config_names("gpt2_fp32") == (["gpt2_fp32"], None)  # nothing bf16: nothing to say


def test_gemm_floor_arithmetic():
    assert bm.gemm_floor(2e9, 400.0, ref_train_ms=20.0) == pytest.approx({"floor_ms": 5.0, "floor_x": 4.0})
    assert bm.gemm_floor(2e9, 400.0)["floor_x"] is None


def _result(config: str, train_ms: float, flops: float) -> dict:
    model, bf16 = bm.CONFIGS[config]
    return {"config": config, "model": model, "llm": "gpt2" if model == "CrossAlign" else None, "bf16": bf16,
            "train_ms": train_ms, "train_windows_s": 32e3 / train_ms, "infer_ms": 100.0, "infer_windows_s": 320.0,
            "rss_peak_mib": 1000.0, "rss_train_growth_mib": 100.0, "trainable_params": 10, "total_params": 20,
            "train_flops": flops, "train_flops_by_op": {"mm": flops}, "block": "768x3072"}


def test_roofline_uses_the_rate_of_each_precision_and_the_reference_time():
    rates = {"fp32": 200.0, "bf16": 400.0}
    gemm = {"m": 3200, "repeats": 3, "blocks": {
        "384x1536": {"gflops_s": {"fp32": 100.0, "bf16": 250.0}, "forward_gflops_s": {"fp32": 110.0, "bf16": 300.0}},
        "768x3072": {"gflops_s": rates, "forward_gflops_s": {"fp32": 220.0, "bf16": 500.0}}}}
    results = [_result("crossalign_bf16", 1500.0, 1000e9), _result("gpt2_fp32", 2000.0, 300e9),
               {**_result("crossalign_fp32", 4000.0, 200e9), "block": "384x1536"}]
    bm._add_roofline(results, gemm)
    cross, ref, small = results
    assert cross["gemm_floor_ms"] == pytest.approx(2500.0) and cross["floor_x"] == pytest.approx(0.8)
    assert ref["gemm_floor_ms"] == pytest.approx(1500.0) and ref["floor_x"] == pytest.approx(2000 / 1500)
    # each configuration is held to the rate of its own block shape
    assert small["gemm_gflops_s"] == 100.0 and small["gemm_floor_ms"] == pytest.approx(2000.0)
    table = bm._table(results, gemm)
    assert "GEMM floor ms" in table and "floor x" in table and "768x3072 blocks fp32 200, bf16 400" in table
    # fp32 rows alone (bf16 skipped on a CPU without fast bf16 matmuls): only the fp32 rates were measured
    fp32_only = {"m": 3200, "repeats": 3, "blocks": {"768x3072": {"gflops_s": {"fp32": 200.0},
                                                                  "forward_gflops_s": {"fp32": 220.0}}}}
    results = [_result("crossalign_fp32", 4000.0, 200e9), _result("gpt2_fp32", 2000.0, 300e9)]
    bm._add_roofline(results, fp32_only)
    table = bm._table(results, fp32_only)
    assert "768x3072 blocks fp32 200 GFLOP/s" in table and "forward GEMM rate 768x3072 blocks fp32 220" in table


def test_op_breakdown_ranks_aten_ops_by_self_time():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    breakdown = bm.op_breakdown(lambda: [(a @ b).relu() for _ in range(3)], top=3, repeats=1)
    ops = breakdown["ops"]
    assert breakdown["page_faults"] >= 0
    assert ops[0]["op"] == "mm" and ops[0]["calls"] == 3 and len(ops) <= 3
    assert all(o["self_ms"] >= p["self_ms"] for p, o in zip(ops[1:], ops)) and 0 < ops[0]["share"] <= 1


def test_op_breakdown_shows_our_kernels_beside_aten_ops():
    from layers.fast_ops import dropout
    x = torch.randn(64, 1000, requires_grad=True)
    dropout(x, 0.1)  # the first call builds and checks the kernel (more calls): outside the profile
    ops = {o["op"]: o for o in bm.op_breakdown(lambda: dropout(x, 0.1).sum().backward(), top=50, repeats=1)["ops"]}
    assert ops["_KeepScale"]["calls"] == 1 and ops["_KeepScaleBackward"]["calls"] == 1
    assert "sum" in ops and not any(name.startswith(("autograd::", "aten::")) for name in ops)


def test_op_breakdown_takes_each_ops_median_over_the_profiled_calls():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    call = iter(range(3))

    def fn():
        if next(call) == 0:  # an op in one call of three (as a stall hits one step): its median is 0
            torch.sort(a.flatten())
        return [(a @ b).relu() for _ in range(3)]

    ops = {o["op"]: o for o in bm.op_breakdown(fn, top=50, repeats=3)["ops"]}
    assert ops["mm"]["calls"] == 3 and ops["mm"]["self_ms"] > 0
    assert ops.get("sort", {"self_ms": 0.0})["self_ms"] == 0.0
    assert sum(o["share"] for o in ops.values()) == pytest.approx(1.0)


# a 40 MiB product made and freed, then 5 more, each leaving an 8 MiB block behind, which the heap may cut from
# the freed product (as it cuts a profiler's records); prints the minor page faults of those 5, with or without
# prefault_heap before them
_PREFAULT_PROBE = """
import resource, sys, torch
from scripts.bench.model import prefault_heap
from utils.allocator import keep_large_blocks
assert keep_large_blocks()
x = torch.randn(10 * 2 ** 20)
for _ in range(5):
    y = x * x; del y
if sys.argv[1] == "1":
    prefault_heap(256)
kept, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    y = x * x; del y
    kept.append(torch.empty(2 ** 21))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the heap policy prefault_heap relies on is glibc's (utils/allocator.py)")
def test_prefault_heap_keeps_large_blocks_off_fresh_pages():
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSALIGN_DEFAULT_MALLOC", "MALLOC_MMAP_MAX_",
                                                            "MALLOC_TRIM_THRESHOLD_")}

    def faults(prefault: str) -> int:
        return int(subprocess.run([sys.executable, "-c", _PREFAULT_PROBE, prefault], cwd=ROOT, env=env,
                                  capture_output=True, text=True, check=True).stdout)

    # where the blocks left behind land depends on the heap's holes at start-up: 8 runs here took 8,195 or
    # 51,203 faults (5 x 40 MiB is 51,200 pages of 4 KiB); with small blocks left behind, 2 of 6 took only 3
    assert any(faults("0") > 5000 for _ in range(3))
    assert faults("1") < 1000  # the same products in room the heap already has mapped: 3 in every run here


def test_scoring_rate_scores_every_window_of_the_series():
    model = torch.nn.Linear(3, 3)
    out = bm.scoring_rate(model, n_points=1_000, seq_len=10, channels=3, batch_size=16, bf16=False)
    assert out["points"] == 1_000 and out["points_s"] > 0


def test_setting_fills_only_options_left_at_their_default():
    import argparse
    parser = argparse.ArgumentParser()
    bm.add_args(parser)
    args = bm.apply_setting(parser.parse_args(["--setting", "quickstart", "--channels", "5"]))
    assert (args.llm, args.llm_layers, args.channels) == ("minilm", 2, 5)
    assert bm.apply_setting(parser.parse_args(["--setting", "paper"])).channels == 38


class _TwoParts(torch.nn.Module):
    """A part called twice with different flags, and one whose input needs no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(3, 8)
        self.block = _Scaled()

    def forward(self, x):
        h = self.embed(x)
        return self.block(h, double=True) + self.block(h=h, double=False)  # a tensor passed by keyword too


class _Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, h, double: bool = False):
        return self.lin(h) * (2.0 if double else 1.0)


def test_part_times_times_every_call_of_each_top_level_module():
    from scripts.bench.parts import capture_calls, part_times
    torch.manual_seed(0)
    model, x = _TwoParts(), torch.randn(4, 3)
    step = lambda: model(x).square().sum().backward()  # noqa: E731
    calls = capture_calls(model, step)
    assert [c["name"] for c in calls] == ["embed", "block (double=True)", "block (double=False)"]
    assert not calls[0]["args"][0].requires_grad and calls[1]["args"][0].requires_grad  # as in the step
    # the recorded output gradient is the one the step's backward delivered: d(sum y^2)/dy = 2y
    y = model.block(model.embed(x), double=True) + model.block(model.embed(x), double=False)
    torch.testing.assert_close(calls[1]["grads"][0], 2 * y.detach())
    rows = part_times(model, step, repeats=2)
    assert [r["part"] for r in rows] == [c["name"] for c in calls]
    # forward + backward matmul FLOPs: embed's input needs no gradient (x @ W and the weight gradient only)
    assert rows[0]["flops"] == 2 * (2 * 4 * 3 * 8) and rows[1]["flops"] == 3 * (2 * 4 * 8 * 8)
    assert all(r["ms"] > 0 and r["page_faults"] >= 0 for r in rows) and all(p.grad is None for p in model.parameters())


def test_table_shows_each_part_against_its_floor_at_the_configurations_rate():
    gemm = {"m": 3200, "repeats": 3, "blocks": {"768x3072": {"gflops_s": {"fp32": 200.0},
                                                             "forward_gflops_s": {"fp32": 220.0}}}}
    parts = [{"part": "llm (adapters=True)", "ms": 800.0, "flops": 120e9, "page_faults": 0},
             {"part": "freq", "ms": 400.0, "flops": 8e9, "page_faults": 7}]
    results = [{**_result("crossalign_fp32", 1300.0, 128e9), "parts": parts, "profile_steps": 3,
                "train_page_faults_all": [0, 3, 1200], "ops_page_faults": 2.0,
                "ops": [{"op": "mm", "self_ms": 700.0, "share": 0.7, "calls": 10}]}]
    bm._add_roofline(results, gemm)
    assert parts[0]["floor_ms"] == pytest.approx(600.0) and parts[1]["floor_ms"] == pytest.approx(40.0)
    table = bm._table(results, gemm)
    assert "the step by part" in table and "floor at 200 GFLOP/s" in table
    line = next(x for x in table.splitlines() if x.strip().startswith("freq"))
    assert line.split()[1:] == ["400", "8.0", "40", "10%"]
    assert "sum of the parts" in table and "the step (timed above)" in table
    # the page faults that would inflate a time are printed beside it: timed steps, profiled steps, parts
    assert "page faults per timed step (median, max; " in table and "CrossAlign fp32 3, 1200" in table
    assert "; 2 page faults per profiled step)" in table and "page faults per timed part: at most 7" in table


def test_quietest_ratio_takes_the_fastest_step_against_the_highest_gemm_pass():
    gemm = {"m": 3200, "repeats": 3, "blocks": {"768x3072": {
        "gflops_s": {"fp32": 150.0}, "forward_gflops_s": {"fp32": 220.0},
        "gflops_s_all": {"fp32": [150.0, 100.0, 240.0]}, "forward_gflops_s_all": {"fp32": [220.0, 250.0, 110.0]}}}}
    results = [{**_result("crossalign_fp32", 4000.0, 600e9), "train_ms_all": [4000, 3125, 5000],
                "infer_flops": 100e9, "infer_ms_all": [500.0, 800.0, 1000.0]},
               _result("gpt2_fp32", 3000.0, 300e9)]  # no per-round lists (an older JSON): no quietest
    bm._add_roofline(results, gemm)
    cross, ref = results
    # floor at 240 GFLOP/s = 2500 ms over the 3125 ms step; the medians give 4000 / 4000
    assert cross["quietest_floor_step"] == pytest.approx(0.8)
    assert cross["gemm_floor_ms"] / cross["train_ms"] == pytest.approx(1.0)
    assert cross["quietest_floor_pass"] == pytest.approx(400.0 / 500.0)  # 100 GFLOP at 250 GFLOP/s over 500 ms
    assert ref["quietest_floor_step"] is None and ref["quietest_floor_pass"] is None
    table = bm._table(results, gemm)
    row = next(x for x in table.splitlines() if x.startswith("CrossAlign fp32") and "600.0" in x)
    assert row.split()[6:8] == ["100%", "80%"]  # floor/step, quietest
    assert "quietest" in table and next(x for x in table.splitlines() if x.startswith("GPT2Model fp32")
                                        and "300.0" in x).split()[6:8] == ["67%", "-"]

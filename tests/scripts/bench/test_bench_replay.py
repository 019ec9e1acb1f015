"""scripts.bench.replay: a step's matmuls recorded with their layouts and replayed alone; the roofline's split."""
from __future__ import annotations

import pytest
import torch

from scripts.bench import model as bm
from scripts.bench.replay import Replay, record_matmuls

pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp_step():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8, bias=False))
    x = torch.randn(64, 16)
    return lambda: mlp(x).square().sum().backward()


def test_record_counts_each_distinct_call_and_its_flops_add_up_to_the_steps():
    step = _mlp_step()
    calls = record_matmuls(step)
    assert sum(c["count"] for c in calls) == 5  # addmm, mm forward; the second layer's grad-input; two grad-weights
    assert {c["op"] for c in calls} == {"addmm", "mm"}
    replay = Replay(calls)
    assert sum(f * c["count"] for f, c in zip(replay.flops, calls)) == sum(bm.count_flops(step).values())


def test_the_same_call_twice_is_one_row_with_count_two():
    a, b = torch.randn(32, 16), torch.randn(16, 8)
    calls = record_matmuls(lambda: [a @ b, a @ b.clone(), a @ b.T.contiguous().T])
    # equal shapes, strides and dtype: one distinct call; the same values in a transposed layout: another
    assert [c["count"] for c in calls] == [2, 1]
    assert [c["args"][1].stride for c in calls] == [(8, 1), (1, 16)]


def test_operands_are_replayed_with_the_recorded_layout():
    w = torch.randn(8, 16)
    (call,) = record_matmuls(lambda: torch.randn(4, 16) @ w.T)  # a transposed view, as F.linear's backward uses
    pool = torch.randn(1000)
    x, wt = (operand.build(pool) for operand in call["args"])
    assert x.shape == (4, 16) and x.is_contiguous()
    assert wt.shape == (16, 8) and wt.stride() == w.T.stride() and not wt.is_contiguous()
    torch.testing.assert_close(x.flatten(), pool[:64])  # values from the pool


def test_passes_give_each_calls_median_and_the_steps_total():
    calls = record_matmuls(_mlp_step())
    replay = Replay(calls)
    totals = [replay.time_pass() for _ in range(3)]
    rows = replay.rows()
    assert all(t > 0 for t in totals) and len(rows) == len(calls)
    assert all(r["ms"] > 0 and r["flops"] > 0 and r["shapes"] for r in rows)
    assert bm.matmul_ms(rows) == pytest.approx(sum(r["ms"] * r["count"] for r in rows))
    assert bm.matmul_ms(None) is None


def test_roofline_splits_floor_per_step_into_matmul_share_and_shape_speed():
    gemm = {"m": 3200, "repeats": 3, "blocks": {"768x3072": {"gflops_s": {"fp32": 200.0},
                                                             "forward_gflops_s": {"fp32": 200.0}}}}
    result = {"config": "crossalign_fp32", "model": "CrossAlign", "llm": "gpt2", "bf16": False, "train_ms": 1000.0,
              "train_windows_s": 32.0, "infer_ms": 500.0, "infer_windows_s": 64.0, "rss_peak_mib": 1.0,
              "rss_train_growth_mib": 1.0, "trainable_params": 1, "total_params": 2, "train_flops": 120e9,
              "infer_flops": 40e9, "block": "768x3072",
              "matmuls": [{"op": "mm", "shapes": [[3200, 768], [768, 768]], "count": 4, "ms": 200.0, "flops": 30e9}],
              "infer_matmuls": [{"op": "mm", "shapes": [[3200, 768], [768, 768]], "count": 2, "ms": 125.0,
                                 "flops": 20e9}]}
    bm._add_roofline([result], gemm)
    assert result["gemm_floor_ms"] == pytest.approx(600.0) and result["matmul_ms"] == pytest.approx(800.0)
    table = bm._table([result], gemm)
    row = next(x for x in table.splitlines() if x.startswith("CrossAlign fp32") and "120.0" in x)
    # floor/step 60 % = matmul/step 80 % x floor/matmul 75 %
    assert row.split()[6:11] == ["60%", "-", "800", "80%", "75%"]  # no per-round lists here: no quietest
    infer_row = next(x for x in table.splitlines() if x.startswith("CrossAlign fp32") and "40.0" in x)
    assert infer_row.split()[5:] == ["40%", "-", "250", "50%", "80%"]  # 200 ms floor of a 500 ms pass
    assert "the training step's matmuls replayed alone" in table and "3200x768 768x768" in table


def test_a_broadcast_operand_is_replayed_with_its_zero_strides():
    bias = torch.randn(8)
    (call,) = record_matmuls(lambda: torch.addmm(bias.expand(4, 8), torch.randn(4, 16), torch.randn(16, 8)))
    b, x, w = (operand.build(torch.randn(1000)) for operand in call["args"])
    assert b.shape == (4, 8) and b.stride() == (0, 1) and x.stride() == (16, 1)
    assert Replay([call]).time_pass() > 0

"""scripts/bench/gelu.py: the table has a row per implementation and shape."""
from __future__ import annotations

import argparse

import pytest

from scripts.bench import dropout, gelu


def test_gelu_benchmark_prints_each_implementation(capsys):
    parser = argparse.ArgumentParser()
    gelu.add_args(parser)
    assert gelu.main(parser.parse_args(["--shapes", "256x1024,3x5x7", "--warmup", "0", "--repeats", "1"])) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("256x1024", "3x5x7"))]
    names = {" ".join(r[2:-4]) for r in rows}
    assert {"F.gelu tanh", "F.gelu erf"} <= names and len(rows) == 2 * 2 * len(names)  # shapes x dtypes x names
    assert {r[1] for r in rows} == {"fp32", "bf16"}
    assert all(float(v) > 0 for r in rows if r[0] == "256x1024" for v in r[-4:])  # 0.00 ms would print for 3x5x7


@pytest.mark.parametrize("bench", [gelu, dropout], ids=["gelu", "dropout"])
def test_an_unknown_dtype_is_named_and_exits_2(capsys, bench):
    parser = argparse.ArgumentParser()
    bench.add_args(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--dtypes", "fp32,fp16"])
    assert exit_info.value.code == 2
    assert "fp16" in capsys.readouterr().err

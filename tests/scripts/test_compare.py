"""The comparison command: every (model, dataset, seed) run once, skipped when done, both tables and the plot."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from scripts import compare

TINY = "--synthetic_length 1200 --synthetic_channels 3 --seq_len 32 --d_model 32 --max_train_steps 20"


def test_compare_two_models_two_seeds(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    argv = ["--models", "LinearAE", "--data", "Synthetic", "--seeds", "0,1", "--jobs", "2", "--out", out,
            "--extra", TINY]
    assert compare.main(argv) == 0
    tables = os.path.join(out, "tables")
    paper, honest = (open(os.path.join(tables, f)).read() for f in ("paper_columns.md", "honest_columns.md"))
    assert "| dataset | LinearAE | Random |" in paper and "R-AUC-PR (of PA predictions)" in paper
    assert "VUS-PR" in honest and "Aff-F1 (train+val)" in honest and "**" in honest and " ± " in honest
    assert os.path.getsize(os.path.join(tables, "comparison.png")) > 1000
    summary = pd.read_csv(os.path.join(out, "summary.csv"))
    assert sorted(summary["method"]) == ["LinearAE", "LinearAE", "Random", "Random"]  # Random added as chance
    assert sorted(summary["seed"]) == [0, 0, 1, 1]
    capsys.readouterr()
    assert compare.main(argv) == 0  # a second call finds every run done
    assert capsys.readouterr().out.count("skipped (results exist)") == 4
    os.remove(os.path.join(tables, "honest_columns.md"))
    assert compare.main(argv[:4] + ["--seeds", "0,1,2", *argv[6:], "--tables_only"]) == 0  # seed 2 never ran
    assert "FAILED" not in capsys.readouterr().out and os.path.exists(os.path.join(tables, "honest_columns.md"))


def test_bad_specs_are_clear_errors(tmp_path, capsys):
    assert compare.main(["--models", "LinearAE:x", "--data", "Synthetic"]) == 2
    assert "only PyOD" in capsys.readouterr().err
    assert compare.main(["--models", "LinearAE", "--data", "MSL", "--root", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_failing_run_is_reported_and_the_rest_tabulated(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    code = compare.main(["--models", "NoSuchModel,LinearAE", "--data", "Synthetic", "--seeds", "0", "--out", out,
                         "--extra", TINY])
    assert code == 1
    text = capsys.readouterr().out
    assert "NoSuchModel_Synthetic_seed0: FAILED (exit 2)" in text and "unknown --model" in text
    assert "unknown --model" in open(os.path.join(out, "failures.txt")).read()
    assert os.path.exists(os.path.join(out, "tables", "honest_columns.md"))


@pytest.mark.parametrize("spec,flags", [("PyOD:KNN", ["--model", "PyOD", "--detector", "KNN"]),
                                        ("CrossAlign", ["--model", "CrossAlign"])])
def test_model_specs(spec, flags):
    (label, got), (base, _) = compare.parse_models(spec)
    assert got == flags and base == "Random" and label in ("PyOD-KNN", "CrossAlign")

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


# ---- forecasting -------------------------------------------------------------------------------

def _ett_root(tmp_path) -> str:
    """A data root with ETT-small/ETTh1.csv in the ETT layout (14,400 hourly rows: 12/4/4 months), 3 variables."""
    from test_forecast import write_layout
    write_layout(tmp_path / "data" / "ETT-small" / "ETTh1.csv", 14400, ["HUFL", "MUFL", "OT"])
    return str(tmp_path / "data")


def test_compare_forecasting_writes_the_paper_layout(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    argv = ["--task", "long_term_forecast", "--models", "DLinear", "--data", "ETTh1", "--pred_len", "12,24",
            "--seeds", "0", "--root", _ett_root(tmp_path), "--out", out,
            "--extra", "--seq_len 48 --max_train_steps 20 --batch_size 64"]
    assert compare.main(argv) == 0
    text = open(os.path.join(out, "tables", "forecast.md")).read()
    assert "| dataset | horizon | DLinear MSE | DLinear MAE | RepeatLast MSE | RepeatLast MAE |" in text
    measured, reference = text.split("## Reference")
    rows = [line for line in measured.splitlines() if line.startswith("| ETTh1 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["12", "24", "**Avg**"]
    assert "reported" not in measured.lower()  # the reported numbers are only in the reference table
    assert "| ETTh1 | Avg (96-720) | 0.376 | 0.392 |" in reference and "CrossAlign (reported)" in reference
    assert "Seconds of the first training epoch" in measured
    long = pd.read_csv(os.path.join(out, "tables", "forecast.csv"))
    assert set(long["method"]) == {"DLinear", "RepeatLast"} and set(long["horizon"].astype(str)) == {"12", "24", "Avg"}
    avg = long[(long["horizon"].astype(str) == "Avg") & (long["method"] == "DLinear")]["mse"].iloc[0]
    per = long[(long["horizon"].astype(str) != "Avg") & (long["method"] == "DLinear")]["mse"]
    assert abs(avg - per.mean()) < 1e-12
    learned, naive = (long[(long["horizon"].astype(str) == "Avg") & (long["method"] == m)]["mse"].iloc[0]
                      for m in ("DLinear", "RepeatLast"))
    assert learned < naive  # the daily cycle is learnable; repeating the last value is not
    summary = pd.read_csv(os.path.join(out, "summary.csv"))
    assert sorted(zip(summary["method"], summary["pred_len"])) == [("DLinear", 12), ("DLinear", 24),
                                                                    ("RepeatLast", 12), ("RepeatLast", 24)]
    capsys.readouterr()
    assert compare.main(argv) == 0
    assert capsys.readouterr().out.count("skipped (results exist)") == 4


def test_forecast_plan_maps_ili_horizons_and_finds_the_folders(tmp_path):
    assert compare.horizons_of("ILI", [96, 192, 336, 720]) == [24, 36, 48, 60]
    assert compare.horizons_of("illness", [96, 12]) == [24, 12] and compare.horizons_of("ETTh1", [96]) == [96]
    root = tmp_path / "data"
    (root / "ETT").mkdir(parents=True)
    (root / "ETT" / "ETTh2.csv").write_text("date,OT\n")
    assert compare.forecast_folder(str(root), "ETTh2") == str(root / "ETT")  # ../shared/data's folder name
    with pytest.raises(ValueError, match="exchange_rate.csv not found"):
        compare.forecast_folder(str(root), "Exchange")
    runs = compare.plan_forecast(compare.parse_models("DLinear", compare.FORECAST_BASELINE),
                                 [("ILI", "", ["--data", "ILI"])], [0], "quick", [], [96, 192])
    assert [r.key for r in runs] == ["DLinear_ILI_pl24_seed0", "RepeatLast_ILI_pl24_seed0",
                                     "DLinear_ILI_pl36_seed0", "RepeatLast_ILI_pl36_seed0"]


def test_forecast_flags_are_checked(capsys):
    assert compare.main(["--models", "LinearAE", "--data", "Synthetic", "--pred_len", "96"]) == 2
    assert "--pred_len only applies" in capsys.readouterr().err
    assert compare.main(["--task", "long_term_forecast", "--models", "DLinear", "--data", "ETTh1",
                         "--pred_len", "0"]) == 2
    assert "--pred_len must list horizons" in capsys.readouterr().err

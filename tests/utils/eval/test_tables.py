"""utils.eval.tables: seed averaging, margins over the Random baseline, the forecasting layout, clear errors."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from utils.eval import tables


def _row(task, model, data, seed, entity="", **metrics):
    setting = "_".join(str(p) for p in (task, model, data, entity, metrics.get("pred_len", ""), f"sd{seed}", "exp_0"))
    return {"time": "2025-01-01T00:00:00", "setting": setting, "task_name": task, "model": model,
            "model_id": model, "data": data, "entity": entity, "seed": seed, "git_commit": "abc", **metrics}


@pytest.fixture
def summary(tmp_path):
    rows = [
        _row("anomaly_detection", "CrossAlign", "MSL", 1, paper_pa_f1=0.90, vus_pr=0.30),
        _row("anomaly_detection", "CrossAlign", "MSL", 2, paper_pa_f1=0.94, vus_pr=0.34),
        _row("anomaly_detection", "Random", "MSL", 1, paper_pa_f1=0.88, vus_pr=0.14),
        _row("anomaly_detection", "CrossAlign", "SMD", 1, "machine-1-2", paper_pa_f1=0.70, vus_pr=0.20),
        _row("long_term_forecast", "CrossAlign", "ETTh1", 1, mse=0.40, mae=0.42, pred_len=96, seq_len=96),
        _row("long_term_forecast", "CrossAlign", "ETTh1", 1, mse=0.50, mae=0.48, pred_len=192, seq_len=96),
        _row("long_term_forecast", "CrossAlign", "ETTh1", 2, mse=0.52, mae=0.50, pred_len=192, seq_len=96),
        _row("long_term_forecast", "RepeatLast", "ETTh1", 1, mse=1.0, mae=0.8, pred_len=96, seq_len=96),
    ]
    path = tmp_path / "summary.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_anomaly_table_averages_seeds_and_shows_margin(summary):
    df = tables.load_summary(summary, "anomaly_detection")
    md, table = tables.anomaly_table(df, "paper_pa_f1")
    msl = table.set_index("dataset").loc["MSL"]
    assert msl["CrossAlign"] == pytest.approx(0.92) and msl["CrossAlign_n"] == 2
    assert msl["CrossAlign_std"] == pytest.approx(0.028284, abs=1e-5)  # sample std of 0.90, 0.94
    assert msl["CrossAlign_over_random"] == pytest.approx(0.04)
    assert "0.9200 ± 0.0283 (+0.0400) n=2" in md
    assert "| SMD/machine-1-2 | 0.7000 n=1 | — |" in md  # entity in the label; no Random there
    assert "No Random baseline for SMD/machine-1-2" in md
    avg = table.set_index("dataset").loc["Avg"]
    assert avg["CrossAlign"] == pytest.approx((0.92 + 0.70) / 2)
    assert md.index("CrossAlign") < md.index("Random")  # chance level is the last column


def test_forecast_table_horizons_and_average(summary):
    df = tables.load_summary(summary, "long_term_forecast")
    md, table = tables.forecast_table(df)
    t = table.set_index("horizon")
    assert t.loc["192", "CrossAlign_mse"] == pytest.approx(0.51)
    assert t.loc["Avg", "CrossAlign_mse"] == pytest.approx((0.40 + 0.51) / 2)
    assert t.loc["Avg", "CrossAlign_mae"] == pytest.approx((0.42 + 0.49) / 2)
    assert math.isnan(t.loc["Avg", "RepeatLast_mse"])  # a missing horizon: no average
    assert "| ETTh1 | **Avg** | **0.455** | **0.455** | — | — |" in md


def test_cli_writes_tables(summary, tmp_path, capsys):
    out = tmp_path / "tables"
    assert tables.main(["--summary", summary, "--metrics", "paper_pa_f1", "vus_pr", "--out_dir", str(out)]) == 0
    assert (out / "anomaly_detection_vus_pr.md").exists() and (out / "anomaly_detection_vus_pr.csv").exists()
    assert "### paper_pa_f1" in capsys.readouterr().out
    assert tables.main(["--summary", summary, "--task", "long_term_forecast", "--out_dir", str(out)]) == 0
    assert pd.read_csv(out / "long_term_forecast.csv").shape[0] == 3  # 2 horizons + Avg


def test_wide_layout(summary, tmp_path, capsys):
    out = tmp_path / "tables"
    assert tables.main(["--summary", summary, "--metrics", "paper_pa_f1", "vus_pr", "--layout", "wide",
                        "--out_dir", str(out)]) == 0
    md = (out / "anomaly_detection_overview.md").read_text()
    assert "| MSL | CrossAlign | 2 | 0.9200 ± 0.0283 n=2 | 0.3200 ± 0.0283 n=2 |" in md
    assert "| MSL | Random | 1 | 0.8800 n=1 | 0.1400 n=1 |" in md


def test_cli_errors(summary, tmp_path, capsys):
    assert tables.main(["--summary", summary, "--metrics", "nope", "--out_dir", str(tmp_path)]) == 2
    assert "available" in capsys.readouterr().err
    assert tables.main(["--summary", str(tmp_path / "missing.csv")]) == 2
    assert tables.main(["--summary", summary, "--where", "data=XYZ", "--out_dir", str(tmp_path)]) == 2

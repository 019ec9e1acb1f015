"""Results never lost, mixed up or left half-written (issues 12 and 17): the setting name separates runs
whose data or model differ, a results folder is complete or marked INCOMPLETE, a run's report can be
rebuilt from its folder, and the tables count runs, not rows."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import run
from data_provider.defaults import apply_defaults
from exp.exp_anomaly_detection import ExpAnomalyDetection
from exp.exp_basic import INCOMPLETE, SETTING_MAX
from models import get_model_class
from test_pipeline import TINY, only_setting
from utils.eval import cli, tables


def setting(*flags: str, i: int = 0) -> str:
    """The setting name run.py would give these flags (no data is loaded)."""
    exp = ExpAnomalyDetection.__new__(ExpAnomalyDetection)
    exp.args = apply_defaults(run.parse_args(list(flags)))
    return exp.setting(i)


BASE = ("--model", "LinearAE", "--data", "Synthetic")


@pytest.mark.parametrize("changed", [
    ("--synthetic_seed", "1"), ("--synthetic_length", "5000"), ("--synthetic_anomaly_rate", "0.05"),
    ("--synthetic_channels", "3"), ("--dropout", "0.2"), ("--max_train_steps", "10"), ("--lradj", "cosine"),
    ("--patience", "5"), ("--bf16", "1"), ("--e_layers", "2"), ("--detector", "KNN"),
])
def test_a_flag_that_changes_the_data_or_the_model_changes_the_setting(changed):
    assert setting(*BASE) != setting(*BASE, *changed)


@pytest.mark.parametrize("same", [("--is_training", "0"), ("--threads", "1"), ("--pot_risk", "0.01"),
                                  ("--test_step", "10"), ("--no_plot",), ("--results", "elsewhere")])
def test_flags_that_only_run_or_evaluate_keep_the_setting_so_a_retest_finds_the_checkpoint(same):
    assert setting(*BASE) == setting(*BASE, *same)


def test_custom_data_files_are_part_of_the_setting(tmp_path):
    for name in ("a.csv", "b.csv", "labels.csv"):
        (tmp_path / name).write_text("x\n1\n")
    custom = ("--model", "LinearAE", "--data", "custom", "--label_file", str(tmp_path / "labels.csv"))
    a = setting(*custom, "--train_file", str(tmp_path / "a.csv"), "--test_file", str(tmp_path / "b.csv"))
    b = setting(*custom, "--train_file", str(tmp_path / "b.csv"), "--test_file", str(tmp_path / "b.csv"))
    assert a != b


def test_a_long_model_id_is_shortened_and_still_unique():
    long = "x" * 300
    a, b = setting(*BASE, "--model_id", long + "a"), setting(*BASE, "--model_id", long + "b")
    assert a != b and len(a) <= SETTING_MAX and len(b) <= SETTING_MAX
    assert a.startswith("anomaly_detection_xxxx") and "_sd2024_exp_0" in a


def test_no_llm_means_no_pmd_tag():
    tags = get_model_class("CrossAlign").setting_tags(apply_defaults(run.parse_args(["--llm", "none"])))
    assert tags[0] == "llmnone" and not [t for t in tags if t.startswith("pmd")]
    with_llm = get_model_class("CrossAlign").setting_tags(apply_defaults(run.parse_args([])))
    assert "pmd1" in with_llm


def test_a_run_with_a_300_character_model_id_completes(run_cli):
    code, results = run_cli(*TINY, "--model_id", "m" * 300, "--train_epochs", "1")
    assert code == 0
    assert pd.read_csv(os.path.join(results, "summary.csv"), dtype=str)["model_id"].tolist() == ["m" * 300]


def test_two_synthetic_seeds_keep_two_result_folders_and_checkpoints(run_cli, tmp_path):
    for seed in ("0", "1"):
        assert run_cli(*TINY, "--train_epochs", "1", "--synthetic_seed", seed)[0] == 0
    assert len(os.listdir(tmp_path / "checkpoints")) == 2
    assert len([d for d in os.listdir(tmp_path / "results") if os.path.isdir(tmp_path / "results" / d)]) == 2


def test_a_run_writes_a_complete_folder_that_rebuilds_its_report_and_a_row_with_its_hyperparameters(
        run_cli, tmp_path, capsys):
    code, results = run_cli(*TINY, "--train_epochs", "1", "--max_train_steps", "3")
    assert code == 0
    folder = only_setting(results)
    assert {"scores.npy", "train_scores.npy", "val_scores.npy", "labels.npy", "metrics.json", "report.md"} \
        <= set(os.listdir(folder)) and INCOMPLETE not in os.listdir(folder)
    meta = json.load(open(os.path.join(folder, "metrics.json")))
    assert meta["model"]["d_model"] == 32  # the width the model uses
    row = pd.read_csv(os.path.join(results, "summary.csv"), dtype=str).iloc[0]
    assert (row["seq_len"], row["step"], row["train_epochs"], row["max_train_steps"], row["steps_trained"],
            row["d_model"], row["batch_size"]) == ("32", "4", "1", "3", "3", "32", "16")
    capsys.readouterr()
    out = tmp_path / "rebuilt.json"
    assert cli.main(["--run", folder, "--out", str(out)]) == 0
    assert "equals its metrics.json" in capsys.readouterr().out
    rebuilt = json.load(open(out))
    assert rebuilt["thresholds"] == meta["metrics"]["thresholds"]  # every threshold, train+val and POT included
    assert {"paper", "trainval", "pot", "spot"} <= set(rebuilt["thresholds"])


def test_a_run_interrupted_while_writing_results_leaves_its_folder_marked_incomplete(run_cli, tmp_path,
                                                                                      monkeypatch, capsys):
    import exp.exp_basic as basic

    def killed(*_):
        raise KeyboardInterrupt  # as a kill between metrics.json and the summary row
    with monkeypatch.context() as m:
        m.setattr(basic, "append_summary", killed)
        with pytest.raises(KeyboardInterrupt):
            run_cli(*TINY, "--train_epochs", "1")
    folder = only_setting(str(tmp_path / "results"))
    assert INCOMPLETE in os.listdir(folder) and not os.path.exists(tmp_path / "results" / "summary.csv")
    assert cli.main(["--run", folder]) == 2
    assert "marked INCOMPLETE" in capsys.readouterr().err
    assert run_cli(*TINY, "--train_epochs", "1", "--is_training", "0")[0] == 0  # the retest completes it
    assert INCOMPLETE not in os.listdir(folder)


def _rows(tmp_path, rows: list[dict]) -> str:
    path = str(tmp_path / "summary.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _row(setting, config, seed, f1, model="CrossAlign", data="UCR", entity="0001", **more):
    return {"setting": setting, "task_name": "anomaly_detection", "model": model, "model_id": model, "data": data,
            "entity": entity, "seed": seed, "config": config, "seq_len": 100, "vus_pr": f1, **more}


def test_tables_count_a_retest_once_and_never_average_different_configurations(tmp_path):
    path = _rows(tmp_path, [
        _row("s_sd1", "c1", 1, 0.50), _row("s_sd1", "c1", 1, 0.50), _row("s_sd1", "c1", 1, 0.50),  # retests
        _row("s_sd2", "c1", 2, 0.60),
        _row("t_sd1", "c2", 1, 0.90, seq_len=50),  # another window: its own column
    ])
    df = tables.split_configurations(tables.load_summary(path, "anomaly_detection"), "model", ["dataset"])
    md, table = tables.anomaly_table(df, "vus_pr")
    t = table.set_index("dataset").loc["UCR/0001"]  # the entity kept as written
    assert t["CrossAlign (seq_len=100)_n"] == 2 and t["CrossAlign (seq_len=100)"] == pytest.approx(0.55)
    assert t["CrossAlign (seq_len=50)_n"] == 1 and t["CrossAlign (seq_len=50)"] == pytest.approx(0.90)
    assert "0.5500 ± 0.0707 n=2" in md and "0.9000 n=1" in md


def test_configurations_no_column_tells_apart_are_labelled_by_their_digest(tmp_path):
    path = _rows(tmp_path, [_row("a_sd1", "aaaaaa11", 1, 0.1), _row("b_sd1", "bbbbbb22", 1, 0.2)])
    df = tables.split_configurations(tables.load_summary(path, "anomaly_detection"), "model", ["dataset"])
    assert sorted(df["model"]) == ["CrossAlign (config aaaaaa)", "CrossAlign (config bbbbbb)"]


def test_where_filters_anomaly_rows_by_number(tmp_path, capsys):
    path = _rows(tmp_path, [_row("a_sd1", "c1", 1, 0.1, learning_rate=0.0001), _row("b_sd1", "c2", 1, 0.2,
                                                                                      seq_len=50)])
    assert tables.main(["--summary", path, "--metrics", "vus_pr", "--where", "seq_len=100", "learning_rate=1e-4",
                        "--out_dir", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "0.1000 n=1" in out and "0.2000" not in out


def test_rows_of_an_older_version_without_config_group_by_their_setting(tmp_path):
    old = [{"setting": f"anomaly_detection_MSL_CrossAlign_MSL_sl100_sd{s}_exp_0", "task_name": "anomaly_detection",
            "model": "CrossAlign", "data": "MSL", "entity": "", "seed": s, "vus_pr": v} for s, v in ((1, .2), (2, .4))]
    df = tables.load_summary(_rows(tmp_path, old), "anomaly_detection")
    assert df["config"].nunique() == 1
    _, table = tables.anomaly_table(df, "vus_pr")
    assert table.set_index("dataset").loc["MSL", "CrossAlign_n"] == 2


def test_random_baselines_from_the_evaluate_command_average_over_seeds_and_count_repeats_once(tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, (np.arange(400) % 50 < 3).astype(np.int8))
    summary = str(tmp_path / "summary.csv")
    for seed in (0, 1, 1):
        assert cli.main(["--random", "uniform", "--seed", str(seed), "--labels", str(labels), "--summary", summary,
                         "--data", "X"]) == 0
    _, table = tables.anomaly_table(tables.load_summary(summary, "anomaly_detection"), "vus_pr")
    assert table.set_index("dataset").loc["X", "Random_n"] == 2


def test_rebuilding_a_run_of_an_older_version_says_what_is_missing(tmp_path, capsys):
    folder = tmp_path / "old_run"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"task_name": "anomaly_detection", "args": {}, "metrics": {}}))
    np.save(folder / "scores.npy", np.zeros(10))
    np.save(folder / "labels.npy", np.zeros(10, np.int8))
    assert cli.main(["--run", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "lacks train_scores.npy, val_scores.npy" in err and "run it again" in err
    assert cli.main(["--scores", str(folder / "scores.npy")]) == 2
    assert "--labels is required" in capsys.readouterr().err

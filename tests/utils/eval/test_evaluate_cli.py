"""The report (utils.eval.report/render), scores.png (utils.eval.plot) and the evaluate command (python -m utils.eval)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from utils.eval import cli
from utils.eval.plot import plot_scores
from utils.eval.render import render_markdown, render_table
from utils.eval.report import evaluate_scores, predictions, summary_row


def _series(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, np.int8)
    for start in (300, 1200, 2500):
        labels[start:start + 60] = 1
    scores = rng.random(n) + 0.8 * labels
    return scores, labels, rng.random(2000), rng.random(500)


def test_report_structure_and_labels():
    s, y, train, val = _series()
    r = evaluate_scores(s, y, train_scores=train, val_scores=val, anomaly_ratio=2.0, vus_window=20)
    json.dumps(r, allow_nan=False)  # strict JSON: undefined values are null, not NaN
    assert list(r["thresholds"]) == ["paper", "trainval", "pot", "spot", "oracle"]
    assert r["thresholds"]["paper"]["leaks_test"] and not r["thresholds"]["paper"]["oracle"]
    assert not r["thresholds"]["trainval"]["leaks_test"] and not r["thresholds"]["pot"]["leaks_test"]
    assert r["thresholds"]["oracle"]["oracle"]
    # the paper threshold is the 98th percentile of train + test scores
    assert r["thresholds"]["paper"]["value"] == pytest.approx(np.percentile(np.r_[train, s], 98))
    for name, m in r["per_threshold"].items():
        assert set(m) == {"n_predicted", "point", "point_adjusted", "pa_k", "affiliation"}
        assert m["point_adjusted"]["f1"] >= m["point"]["f1"]
        assert len(m["pa_k"]["f1"]) == 11
    assert set(r["threshold_free"]) == {"auc_roc", "auc_pr", "range_auc_roc", "range_auc_pr", "vus_roc", "vus_pr"}
    assert r["params"]["vus_window"] == 20 and r["params"]["vus_max_buffer"] == 20
    preds = predictions(r, s)
    assert set(preds) == set(r["thresholds"])
    for name, p in preds.items():
        assert p.shape == s.shape and int(p.sum()) == r["per_threshold"][name]["n_predicted"]
    # the oracle is the best point-wise F1 of all thresholds
    best = max(m["point"]["f1"] for m in r["per_threshold"].values())
    assert r["per_threshold"]["oracle"]["point"]["f1"] == pytest.approx(best)


def test_missing_inputs_are_noted_and_rows_keep_their_columns():
    s, y, train, _ = _series()
    full = summary_row(evaluate_scores(s, y, train_scores=train))
    r = evaluate_scores(s, y)  # no train or validation scores
    assert list(r["thresholds"]) == ["oracle"]
    assert any("no train scores" in n for n in r["notes"])
    row = summary_row(r)
    assert list(row) == list(full)  # same columns whatever is missing
    assert math.isnan(row["paper_pa_f1"]) and not math.isnan(row["auc_roc"])
    r0 = evaluate_scores(s, np.zeros_like(y), train_scores=train)
    json.dumps(r0, allow_nan=False)
    assert r0["threshold_free"]["auc_roc"] is None and any("no anomaly" in n for n in r0["notes"])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores(np.r_[s[:-1], np.nan], y)


def test_render_and_plot(tmp_path):
    s, y, train, val = _series()
    r = evaluate_scores(s, y, train_scores=train, val_scores=val, anomaly_ratio=2.0)
    table = render_table(r)
    assert "LEAKS test" in table and "VUS-PR" in table and "oracle" in table
    md = render_markdown(r, title="demo")
    assert md.startswith("# demo") and "| threshold |" in md and "PA%K" in md
    path = tmp_path / "scores.png"
    thresholds = {k: v["value"] for k, v in r["thresholds"].items()}
    plot_scores(str(path), s, y, thresholds, predictions(r, s), title="demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]  # atomic: no temp left


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


def test_cli_evaluates_saved_scores(tmp_path, capsys):
    s, y, train, val = _series()
    out = tmp_path / "report.json"
    md = tmp_path / "report.md"
    rc = cli.main(["--scores", _save(tmp_path, "s.npy", s), "--labels", _save(tmp_path, "l.npy", y.astype(float)),
                   "--train_scores", _save(tmp_path, "t.npy", train), "--val_scores", _save(tmp_path, "v.npy", val),
                   "--anomaly_ratio", "2", "--out", str(out), "--markdown", str(md)])
    assert rc == 0
    assert "paper" in capsys.readouterr().out
    report = json.loads(out.read_text())
    direct = evaluate_scores(s, y, train_scores=train, val_scores=val, anomaly_ratio=2.0)
    for r in (report, direct):
        r.pop("seconds")  # wall times differ run to run
    assert report == json.loads(json.dumps(direct | {"source": report["source"]}))
    assert md.read_text().startswith("# ")


@pytest.mark.parametrize("scores,labels,message", [
    (np.random.default_rng(0).random(100), np.zeros(90), "100 points but labels have 90"),
    (np.r_[np.random.default_rng(0).random(99), np.nan], np.eye(1, 100, 50)[0], "NaN"),
    (np.random.default_rng(0).random(100), np.full(100, 2), "0/1"),
    (np.random.default_rng(0).random(100), np.zeros(100), "no anomaly"),
])
def test_cli_rejects_bad_input(tmp_path, capsys, scores, labels, message):
    rc = cli.main(["--scores", _save(tmp_path, "s.npy", scores), "--labels", _save(tmp_path, "l.npy", labels)])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_cli_all_zero_labels_allowed_on_request(tmp_path, capsys):
    rc = cli.main(["--scores", _save(tmp_path, "s.npy", np.random.default_rng(0).random(100)),
                   "--labels", _save(tmp_path, "l.npy", np.zeros(100)), "--allow_no_anomalies"])
    assert rc == 0 and "no anomaly" in capsys.readouterr().out


def test_cli_random_baseline_is_seeded(tmp_path):
    _, y, _, _ = _series()
    labels = _save(tmp_path, "l.npy", y)
    train = _save(tmp_path, "train.npy", np.zeros((1500, 3)))  # raw split file: only its length is used
    reports = []
    for seed in (5, 5, 6):
        out = tmp_path / f"r{seed}.json"
        assert cli.main(["--random", "uniform", "--seed", str(seed), "--labels", labels, "--train_scores", train,
                         "--out", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
        reports[-1].pop("seconds")
    assert reports[0] == reports[1] and reports[0] != reports[2]
    assert reports[0]["source"]["scores"] == "random uniform, seed 5"
    assert 0.4 < reports[0]["threshold_free"]["auc_roc"] < 0.6  # chance level


def test_cli_appends_summary_row_for_tables(tmp_path, capsys):
    from utils.eval import tables

    _, y, _, _ = _series()
    labels = _save(tmp_path, "l.npy", y)
    summary = str(tmp_path / "summary.csv")
    assert cli.main(["--random", "uniform", "--labels", labels, "--summary", summary]) == 2  # needs --data
    assert "--data" in capsys.readouterr().err
    for seed in (0, 1):
        assert cli.main(["--random", "uniform", "--seed", str(seed), "--labels", labels, "--summary", summary,
                         "--data", "Toy"]) == 0
    md, table = tables.anomaly_table(tables.load_summary(summary, "anomaly_detection"), "vus_pr")
    assert table.loc[0, "Random_n"] == 2 and "| Toy |" in md


@pytest.mark.parametrize("flag", ["--out", "--markdown", "--summary"])
def test_cli_output_that_is_a_folder_is_an_error_before_evaluating(tmp_path, capsys, flag):
    s, y, _, _ = _series(n=500)
    folder = tmp_path / "reports"
    folder.mkdir()
    extra = ["--data", "X", "--model", "M"] if flag == "--summary" else []
    rc = cli.main(["--scores", _save(tmp_path, "s.npy", s), "--labels", _save(tmp_path, "l.npy", y.astype(float)),
                   flag, str(folder), *extra])
    out = capsys.readouterr()
    assert rc == 2 and f"{flag} {folder} is a folder" in out.err
    assert out.out == "" and list(folder.iterdir()) == []  # nothing evaluated, nothing written

"""End to end: run.py -> exp -> model -> scores -> report files, on the synthetic default and on real SMD."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import data_path
from utils.io import atomic_write, save_json

TINY = ("--model", "LinearAE", "--data", "Synthetic", "--synthetic_length", "1200", "--synthetic_channels", "3",
        "--seq_len", "32", "--step", "4", "--train_epochs", "2", "--batch_size", "16", "--d_model", "32",
        "--learning_rate", "1e-3")


def only_setting(results: str) -> str:
    (setting,) = [d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))]
    return os.path.join(results, setting)


def test_synthetic_run_writes_every_output(run_cli):
    code, results = run_cli(*TINY, plot=True)
    assert code == 0
    folder = only_setting(results)
    for name in ("metrics.json", "report.md", "scores.npy", "labels.npy", "scores.png"):
        assert os.path.getsize(os.path.join(folder, name)) > 0, name
    scores, labels = np.load(os.path.join(folder, "scores.npy")), np.load(os.path.join(folder, "labels.npy"))
    assert scores.shape == labels.shape == (1200,) and np.isfinite(scores).all()
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert payload["args"]["seed"] == 2024 and payload["provenance"]["packages"]["torch"]
    assert "commit" in payload["provenance"] and payload["model"]["trainable_params"] > 0
    assert len(payload["training"]["epochs"]) == 2
    assert payload["metrics"]["data"]["n_test"] == 1200
    summary = pd.read_csv(os.path.join(results, "summary.csv"))
    assert len(summary) == 1 and summary.loc[0, "data"] == "Synthetic"
    # the checkpoint and its arguments sit next to each other
    ckpt_dir = os.path.join(os.path.dirname(results), "checkpoints", os.path.basename(folder))
    assert {"checkpoint.pt", "args.json"} <= set(os.listdir(ckpt_dir))
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp-")]


def test_same_seed_same_scores_and_saved_checkpoint_reproduces_them(run_cli, tmp_path):
    assert run_cli(*TINY)[0] == 0
    folder = only_setting(str(tmp_path / "results"))
    first = np.load(os.path.join(folder, "scores.npy"))
    assert run_cli(*TINY)[0] == 0
    np.testing.assert_array_equal(first, np.load(os.path.join(folder, "scores.npy")))
    assert run_cli(*TINY, "--is_training", "0")[0] == 0
    np.testing.assert_allclose(first, np.load(os.path.join(folder, "scores.npy")), rtol=1e-6)
    assert len(pd.read_csv(str(tmp_path / "results" / "summary.csv"))) == 3


def test_testing_without_a_checkpoint_says_how_to_get_one(run_cli, capsys):
    assert run_cli(*TINY, "--is_training", "0")[0] == 2
    assert "train first with --is_training 1" in capsys.readouterr().err


def test_missing_data_is_an_error_message_not_a_traceback(run_cli, tmp_path, capsys):
    assert run_cli("--model", "LinearAE", "--data", "MSL", "--root_path", str(tmp_path / "none"))[0] == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MSL: data folder") and "MSL_train.npy" in err and "Traceback" not in err


def test_overlapping_test_windows_average(run_cli, tmp_path):
    assert run_cli(*TINY, "--test_step", "8")[0] == 0
    scores = np.load(os.path.join(only_setting(str(tmp_path / "results")), "scores.npy"))
    assert scores.shape == (1200,) and np.isfinite(scores).all()


def test_crash_mid_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    save_json(str(target), {"ok": 1})

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write('{"half": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), broken)
    assert json.load(open(target)) == {"ok": 1}
    assert os.listdir(target.parent) == ["metrics.json"]


def test_real_smd_machine_end_to_end(run_cli):
    """A short training run on one SMD machine from the shared data: finite metrics, a score per test point."""
    root = data_path("SMD", "train", "machine-1-2.txt")
    root = os.path.dirname(os.path.dirname(root))
    code, results = run_cli("--model", "LinearAE", "--data", "SMD", "--root_path", root, "--entity", "machine-1-2",
                            "--train_epochs", "1", "--step", "10", "--max_train_steps", "40", "--d_model", "64")
    assert code == 0
    folder = only_setting(results)
    scores = np.load(os.path.join(folder, "scores.npy"))
    assert scores.shape == (23694,) and np.isfinite(scores).all()
    metrics = json.load(open(os.path.join(folder, "metrics.json")))["metrics"]
    flat = pd.json_normalize(metrics).select_dtypes("number").iloc[0]
    assert len(flat) > 10 and np.isfinite(flat.to_numpy(dtype=float)).all()

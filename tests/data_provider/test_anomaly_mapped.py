"""Large `.npy` splits stay memory-mapped (MappedSeries): the same windows, scaler and scores as in RAM."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import data_provider.anomaly as anomaly
from data_provider.anomaly import MappedSeries, WindowDataset, load_anomaly_data
from test_data import make_args, write_npy
from test_pipeline import only_setting


@pytest.fixture
def msl_files(tmp_path):
    rng = np.random.default_rng(1)
    train = (rng.normal(size=(700, 4)) * [1, 5, 0.1, 2] + [0, 3, -1, 100]).astype(np.float32)
    test = rng.normal(size=(400, 4)).astype(np.float32)
    labels = (rng.random(400) < 0.05).astype(np.float32)
    return write_npy(tmp_path / "MSL", "MSL", train, test, labels), train, test


def test_large_split_stays_on_the_map_and_matches_ram(msl_files, monkeypatch):
    root = msl_files[0]
    args = make_args("--data", "MSL", "--root_path", root, "--seq_len", "20")
    in_ram = load_anomaly_data(args)
    monkeypatch.setattr(anomaly, "MAPPED_MIN_BYTES", 0)
    monkeypatch.setattr(anomaly, "_CHUNK_ROWS", 64)  # several chunks: the merged statistics are exercised
    mapped = load_anomaly_data(args)
    assert isinstance(mapped.train, MappedSeries) and isinstance(in_ram.train, np.ndarray)
    assert mapped.info.pop("memory_mapped") is True and mapped.info == in_ram.info
    for split in ("train", "val", "test"):
        m, r = getattr(mapped, split), getattr(in_ram, split)
        assert m.shape == r.shape
        np.testing.assert_allclose(np.asarray(m), r, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(m[5:30, 1:3], r[5:30, 1:3], rtol=1e-6, atol=1e-6)
    starts = np.array([0, 7, 500 - 20 - 60])
    a, b = WindowDataset(mapped.train, 20, starts), WindowDataset(in_ram.train, 20, starts)
    for i in range(3):
        np.testing.assert_allclose(a[i].numpy(), b[i].numpy(), rtol=1e-6, atol=1e-6)
    # a DataLoader worker receives the file name, not the data
    blob = pickle.dumps(mapped.test)
    assert len(blob) < 2000
    np.testing.assert_array_equal(pickle.loads(blob)[10:20], mapped.test[10:20])


def test_nonfinite_values_in_a_mapped_split_are_filled_in_ram(tmp_path, monkeypatch, capsys):
    train = np.ones((300, 2), np.float32)
    train[:, 1] = np.arange(300)
    train[50, 0] = np.nan
    root = write_npy(tmp_path / "MSL", "MSL", train, np.ones((100, 2), np.float32), np.zeros(100, np.float32))
    monkeypatch.setattr(anomaly, "MAPPED_MIN_BYTES", 0)
    with pytest.warns(UserWarning, match="NaN/Inf"):
        data = load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "20"))
    assert isinstance(data.train, np.ndarray) and np.isfinite(data.train).all()
    assert "loading them in RAM" in capsys.readouterr().out


def test_a_run_on_mapped_splits_scores_as_in_ram(msl_files, run_cli, tmp_path, monkeypatch, one_thread):
    flags = ("--model", "LinearAE", "--data", "MSL", "--root_path", msl_files[0], "--seq_len", "20",
             "--train_epochs", "1", "--batch_size", "16", "--d_model", "16", "--threads", "1")
    assert run_cli(*flags)[0] == 0
    folder = only_setting(str(tmp_path / "results"))
    in_ram = np.load(os.path.join(folder, "scores.npy"))
    monkeypatch.setattr(anomaly, "MAPPED_MIN_BYTES", 0)
    assert run_cli(*flags)[0] == 0
    np.testing.assert_allclose(np.load(os.path.join(folder, "scores.npy")), in_ram, rtol=1e-4, atol=1e-6)

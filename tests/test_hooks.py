"""The shared loop's model hooks (models/__init__.py): a model changes the setting name, the loss, the
score and the fit through them, and the loop itself never names a model.

This file is itself the probe model's module (`class Model` below), registered for the test only.
"""
from __future__ import annotations

import json
import os
from argparse import Namespace

import numpy as np
import torch
from torch import nn

import models
from data_provider.anomaly import load_anomaly_data
from exp.exp_anomaly_detection import anomaly_loss, window_scores
from test_pipeline import TINY, only_setting

CALLS: dict[str, object] = {}


class Model(nn.Module):
    """Reconstructs with one linear map; scores a point by |x| of its first channel; counts its hooks."""

    def __init__(self, args) -> None:
        super().__init__()
        self.proj = nn.Linear(args.enc_in, args.enc_in)

    @staticmethod
    def setting_tags(args) -> list[str]:
        return [f"probe{args.d_model}"]

    def forward(self, x):
        return self.proj(x)

    def loss(self, x):
        CALLS["loss"] = int(CALLS.get("loss", 0)) + 1
        mse = torch.mean((self.proj(x) - x) ** 2)
        return 2 * mse, mse

    def score(self, x):
        return x[..., 0].abs()

    def fit(self, train: np.ndarray) -> None:
        CALLS["fit"] = train.shape


def test_hooks_drive_the_loop(run_cli, monkeypatch):
    monkeypatch.setitem(models.MODELS, "HookProbe", __name__)
    CALLS.clear()
    flags = list(TINY)
    flags[flags.index("LinearAE")] = "HookProbe"
    code, results = run_cli(*flags)
    assert code == 0
    folder = only_setting(results)
    assert "_probe32_" in os.path.basename(folder)  # setting_tags
    assert CALLS["loss"] > 0 and CALLS["fit"] == (960, 3)  # the train part: 80 % of the 1200 training points
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert "fit_seconds" in payload["training"]
    scores = np.load(os.path.join(folder, "scores.npy"))
    # the score hook replaced the reconstruction error: with non-overlapping test windows it is |x_0|
    data = load_anomaly_data(Namespace(**payload["args"]))
    assert np.allclose(scores, np.abs(data.test[:, 0]), atol=1e-6)


def test_default_loss_and_score_without_hooks():
    model = nn.Linear(3, 3)
    x = torch.randn(4, 10, 3)
    total, task = anomaly_loss(model, x, torch.autocast("cpu", enabled=False))
    mse = torch.mean((model(x) - x) ** 2)
    assert torch.allclose(total, mse) and torch.allclose(task, mse)
    s = window_scores(model, x, torch.autocast("cpu", enabled=False))
    assert s.shape == (4, 10) and torch.allclose(s, ((model(x) - x) ** 2).mean(-1))


class SeriesModel(nn.Module):
    """No gradient training: `fit` learns the training mean, `score_series` scores a whole split by distance."""
    needs_training = False

    def __init__(self, args) -> None:
        super().__init__()
        self.center = None

    def forward(self, x):
        return x

    def fit(self, train: np.ndarray) -> None:
        CALLS["fits"] = int(CALLS.get("fits", 0)) + 1
        self.center = train.mean(axis=0)

    def score_series(self, series: np.ndarray) -> np.ndarray:
        return np.abs(series - self.center).sum(axis=1)


def test_series_hook_and_refit_when_only_testing(run_cli, monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(models.MODELS, "SeriesProbe", "series_probe")
    monkeypatch.setitem(sys.modules, "series_probe", type(sys)("series_probe"))
    sys.modules["series_probe"].Model = SeriesModel
    CALLS.clear()
    flags = list(TINY)
    flags[flags.index("LinearAE")] = "SeriesProbe"
    code, results = run_cli(*flags)
    assert code == 0 and CALLS["fits"] == 1
    folder = only_setting(results)
    first = np.load(os.path.join(folder, "scores.npy"))
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    data = load_anomaly_data(Namespace(**payload["args"]))
    assert np.allclose(first, np.abs(data.test - data.train.mean(axis=0)).sum(axis=1), atol=1e-5)
    assert run_cli(*flags, "--is_training", "0")[0] == 0 and CALLS["fits"] == 2  # refitted, not unpickled
    assert np.array_equal(np.load(os.path.join(folder, "scores.npy")), first)

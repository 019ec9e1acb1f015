"""The critique, shown: uniform random scores on MSL reach a high point-adjusted F1 under the paper's
protocol (threshold = percentile 100 - 0.85 of train+test scores, then point adjustment), but not a high
point-wise F1 or VUS-PR (Kim et al., AAAI 2022). Also the Random baseline model's contract."""
from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest
import torch

from conftest import data_path
from utils.evaluation import evaluate_scores


def test_random_scores_fool_point_adjustment_on_msl():
    labels = np.load(data_path("MSL", "MSL_test_label.npy"))
    n_train = np.load(data_path("MSL", "MSL_train.npy"), mmap_mode="r").shape[0]
    rate = labels.mean()  # 10.5 % of MSL's test points are anomalous, in long segments
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        r = evaluate_scores(rng.random(labels.size), labels, train_scores=rng.random(n_train), anomaly_ratio=0.85)
        paper = r["per_threshold"]["paper"]
        assert paper["point_adjusted"]["f1"] > 0.8  # looks like a strong detector ...
        assert paper["point"]["f1"] < 0.05  # ... but point-wise it finds ~1 % of anomalies
        assert paper["pa_k"]["auc"] < 0.1  # PA%K: the credit vanishes once K asks for any coverage
        assert r["threshold_free"]["vus_pr"] < rate + 0.06  # near the anomaly rate, i.e. chance
        assert abs(r["threshold_free"]["auc_roc"] - 0.5) < 0.01


def test_random_model_scores_are_seeded_uniform():
    from models import get_model_class

    cls = get_model_class("Random")
    assert cls.needs_training is False
    model = cls(Namespace(seed=7, enc_in=3, seq_len=50))
    x = torch.randn(400, 50, 3)
    x_hat = model(x)
    assert x_hat.shape == x.shape and not list(model.parameters())
    score = ((x_hat - x) ** 2).mean(-1).flatten().double().numpy()  # the pipeline's per-point score
    again = ((cls(Namespace(seed=7))(x) - x) ** 2).mean(-1).flatten().double().numpy()
    other = ((cls(Namespace(seed=8))(x) - x) ** 2).mean(-1).flatten().double().numpy()
    assert np.allclose(score, again) and not np.allclose(score, other)
    stats = pytest.importorskip("scipy.stats")
    assert stats.kstest(score, "uniform").pvalue > 1e-3  # U(0, 1)
    assert abs(np.corrcoef(score[:-1], score[1:])[0, 1]) < 0.02  # no dependence between neighbours
    assert abs(np.corrcoef(score, x.pow(2).mean(-1).flatten().numpy())[0, 1]) < 0.02  # nor on the data

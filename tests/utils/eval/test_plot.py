"""utils/eval/plot.py: scores.png keeps the thresholds visible under spikes and tells hits from false alarms."""
from __future__ import annotations

import numpy as np

from utils.eval.plot import plot_scores, strip_marks, y_range


def _spiky(n: int = 20_000, seed: int = 0) -> np.ndarray:
    s = np.random.default_rng(seed).gamma(2.0, 0.05, n)  # bulk in [0, ~0.6]
    s[[100, 7_000, 15_000]] = [500.0, 800.0, 1_000.0]  # three spikes 1000x the bulk
    return s


def test_a_few_spikes_do_not_squash_the_thresholds():
    s, thr = _spiky(), {"percentile": 0.4, "pot": 0.55}
    low, high, clipped = y_range(s, thr)
    assert clipped and high < 1.0 < s.max()  # the spikes are cut off ...
    assert low <= s.min() and high > max(thr.values())  # ... every threshold and the bulk stay in range
    assert high > np.percentile(s, 99.9)


def test_no_clipping_when_nothing_dominates():
    s = np.random.default_rng(1).normal(1.0, 0.1, 5_000)
    low, high, clipped = y_range(s, {"percentile": float(np.percentile(s, 99))})
    assert not clipped and low < s.min() and high > s.max()


def test_a_threshold_above_every_score_is_still_in_range():
    s = np.random.default_rng(2).uniform(0, 1, 1_000)
    low, high, _ = y_range(s, {"pot": 5.0, "spot": np.full(1_000, 7.0)})
    assert high > 7.0


def test_strip_marks_separate_hits_from_false_alarms():
    labels = np.zeros(100, dtype=int)
    labels[40:50] = 1
    pred = np.zeros(100, dtype=bool)
    pred[[5, 45, 46, 90]] = True
    hits, false = strip_marks(pred, labels, max_points=1_000)
    assert hits.tolist() == [45, 46] and false.tolist() == [5, 90]


def test_plot_marks_the_clipped_points(tmp_path):
    s = _spiky()
    labels = np.zeros_like(s, dtype=int)
    labels[6_990:7_010] = 1
    path = tmp_path / "scores.png"
    out = plot_scores(str(path), s, labels, {"percentile": 0.4}, {"percentile": s > 0.4}, title="spikes")
    assert path.stat().st_size > 0 and out["ylim"][1] < 1.0
    assert out["clipped"] == int((s > out["ylim"][1]).sum()) >= 3  # the spikes and the far tail

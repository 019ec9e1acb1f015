"""exp/exp_anomaly_detection.py: scoring in inference mode and large batches, a seeded threshold sample,
progress bars named by split, and the training bar's loss shown at the end of every epoch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import run
from exp.exp_anomaly_detection import ExpAnomalyDetection, score_windows
from test_pipeline import TINY


@pytest.fixture
def exp(tmp_path, one_thread):
    args = run.parse_args([*TINY, "--no_progress", "--results", str(tmp_path / "r"),
                           "--checkpoints", str(tmp_path / "c")])
    from data_provider.defaults import apply_defaults
    return ExpAnomalyDetection(apply_defaults(args))


def test_scores_do_not_depend_on_the_batch_size_and_record_no_graph(exp):
    series = exp.data.test
    full = exp.point_scores(series, exp.args.seq_len)
    exp.args.score_batch_size = 3
    np.testing.assert_allclose(exp.point_scores(series, exp.args.seq_len), full, rtol=1e-5, atol=1e-7)
    seen = []
    hook = exp.model.register_forward_hook(lambda m, i, o: seen.append((torch.is_inference_mode_enabled(), len(i[0]))))
    list(score_windows(exp.model, series, np.arange(0, 320, 32), 32, 4, exp._autocast, exp.device))
    hook.remove()
    assert seen == [(True, 4), (True, 4), (True, 2)]


def test_automatic_batch_is_larger_than_the_training_batch(exp):
    assert exp.args.score_batch_size == 0 and exp.score_batch_size() > exp.args.batch_size


def test_threshold_sample_scores_seeded_whole_windows_and_never_the_test_split(exp, monkeypatch):
    L = exp.args.seq_len
    exp.args.threshold_sample = 100  # 4 windows of 32
    a = exp.calibration_scores(exp.data.train, "train")
    b = exp.calibration_scores(exp.data.train, "train")
    assert a.shape == (4 * L,) and np.array_equal(a, b)  # seeded
    full = exp.point_scores(exp.data.train, L)
    windows = full[:len(full) // L * L].reshape(-1, L)
    rows = [int(np.argmin(np.abs(windows - w).sum(1))) for w in a.reshape(-1, L)]
    np.testing.assert_allclose(a.reshape(-1, L), windows[rows], rtol=1e-5, atol=1e-7)  # whole windows, in order
    assert rows == sorted(rows) and len(set(rows)) == 4
    exp.args.seed += 1
    assert not np.array_equal(exp.calibration_scores(exp.data.train, "train"), a)
    exp.args.threshold_sample = 0
    assert exp.calibration_scores(exp.data.train, "train").shape == (len(exp.data.train),)
    # test() scores the test split in full whatever the sample
    exp.args.threshold_sample, exp.args.no_plot = 64, True
    calls = []
    original = exp.point_scores
    monkeypatch.setattr(exp, "point_scores", lambda s, step, split="test": calls.append((len(s), split)) or
                        original(s, step, split))
    exp._fitted, exp.args.is_training = True, 1
    exp.test("setting")
    assert calls == [(len(exp.data.test), "test")]


def test_progress_bars_name_the_split(exp, monkeypatch):
    names = []
    real = exp._progress
    monkeypatch.setattr(exp, "_progress", lambda it, desc, total=None: names.append(desc) or real(it, desc, total))
    exp.args.threshold_sample = 64
    exp.point_scores(exp.data.test, exp.args.seq_len, "test")
    exp.calibration_scores(exp.data.val, "val")
    assert names == ["scoring test", "scoring val (sample)"]


def test_training_bar_shows_the_last_loss_of_every_epoch(exp, monkeypatch):
    shown = []

    class Bar:
        def __init__(self, it):
            self.it = it

        def __iter__(self):
            return iter(self.it)

        def set_postfix(self, **kw):
            shown.append((len(shown), kw["loss"]))

    monkeypatch.setattr(exp, "_progress", lambda it, desc, total=None: Bar(it))
    exp.args.max_train_steps, exp.args.train_epochs = 5, 1
    record = exp.train("setting")
    assert len(shown) == 2  # step 0 and the epoch's last step (5 < 20)
    assert record["epochs"][0]["steps"] == 5


def test_a_smoke_budget_bounds_validation_too(tmp_path, one_thread):
    from data_provider.defaults import apply_defaults
    flags = [*TINY, "--no_progress", "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c")]
    full = ExpAnomalyDetection(apply_defaults(run.parse_args(flags)))
    smoke = ExpAnomalyDetection(apply_defaults(run.parse_args([*flags, "--max_train_steps", "2"])))
    assert len(full.val_loader.dataset) > 2 * 16
    starts = smoke.val_loader.dataset.starts
    assert len(smoke.val_loader) == 2 and len(starts) == 2 * 16
    assert starts[0] == 0 and starts[-1] == full.val_loader.dataset.starts[-1]  # spread over the whole split

"""The forecasting rivals (models/DLinear.py, PatchTST.py, iTransformer.py, GPT4TS.py's forecasting form): shapes
for every horizon, the defaults table, DLinear's decomposition by hand, and a short ETTh1 run against RepeatLast."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import run
from conftest import data_path
from models import MODEL_DEFAULTS, get_model_class
from models.DLinear import decompose, moving_average

pytestmark = pytest.mark.usefixtures("one_thread")

FORECAST = ("--task_name", "long_term_forecast")
SMALL = {"DLinear": (), "PatchTST": ("--d_model", "32", "--d_ff", "64", "--n_heads", "4"),
         "iTransformer": ("--d_model", "32", "--d_ff", "64", "--n_heads", "4")}


def build(name: str, L: int, P: int, C: int, *flags: str, llm: str | None = None) -> torch.nn.Module:
    extra = ("--llm", llm, "--llm_init", "random", "--llm_layers", "1") if name == "GPT4TS" else SMALL[name]
    args = run.parse_args([*FORECAST, "--model", name, "--seq_len", str(L), "--pred_len", str(P), *extra, *flags])
    args.enc_in = C
    torch.manual_seed(0)
    return get_model_class(name)(args)


@pytest.mark.parametrize("name", ["DLinear", "PatchTST", "iTransformer", "GPT4TS"])
@pytest.mark.parametrize("L,horizons", [(96, (96, 192, 336, 720)), (36, (24, 36, 48, 60))])
def test_shapes_for_every_horizon(tiny_gpt2, name, L, horizons):
    for P in horizons:
        model = build(name, L, P, 7, llm=tiny_gpt2)
        out = model(torch.randn(3, L, 7))
        assert out.shape == (3, P, 7) and torch.isfinite(out).all()


def test_model_alone_gives_the_table_defaults_and_flags_win():
    args = run.parse_args([*FORECAST, "--model", "PatchTST"])
    row = MODEL_DEFAULTS["PatchTST"]["long_term_forecast"]
    assert {k: getattr(args, k) for k in row} == row == {"d_model": 512, "d_ff": 2048, "e_layers": 1, "n_heads": 2,
                                                         "patch_len": 16, "stride": 8}
    assert run.parse_args([*FORECAST, "--model", "iTransformer"]).d_model == 128
    assert run.parse_args([*FORECAST, "--model", "DLinear"]).moving_avg == 25
    given = run.parse_args([*FORECAST, "--model", "PatchTST", "--d_model", "64", "--n_heads", "4"])
    assert (given.d_model, given.n_heads, given.d_ff) == (64, 4, 2048)
    # another model, or the anomaly task, keeps run.py's own defaults
    assert run.parse_args([*FORECAST, "--model", "CrossAlign"]).d_model == 128
    assert run.parse_args(["--model", "PatchTST"]).d_model == 128


def test_dlinear_decomposition_is_the_hand_computed_moving_average():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 30, 3))
    for k in (1, 4, 5, 25):
        front, back = (k - 1) // 2, k // 2
        want = np.empty_like(x)
        for t in range(30):  # the mean of x[t-front .. t+back], indices clipped to the ends (edge repetition)
            idx = np.clip(np.arange(t - front, t + back + 1), 0, 29)
            want[:, t] = x[:, idx].mean(axis=1)
        got = moving_average(torch.tensor(x), k).numpy()
        np.testing.assert_allclose(got, want, atol=1e-12)
        seasonal, trend = decompose(torch.tensor(x), k)
        np.testing.assert_allclose((seasonal + trend).numpy(), x, atol=1e-12)


def test_untrained_dlinear_forecasts_the_lookback_mean():
    model = build("DLinear", 24, 5, 2)
    x = torch.randn(4, 24, 2)
    # both maps start as the mean over the lookback: mean(seasonal) + mean(trend) = mean(x)
    torch.testing.assert_close(model(x), x.mean(1, keepdim=True).expand(-1, 5, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flags, message", [
    (("--model", "PatchTST", "--seq_len", "8", "--patch_len", "32"), "--patch_len 32 is longer"),
    (("--model", "PatchTST", "--d_model", "30", "--n_heads", "4"), "divisible by --n_heads"),
    (("--model", "DLinear", "--task_name", "anomaly_detection"), "is a forecaster"),
])
def test_bad_options_are_named(flags, message):
    argv = [*FORECAST, *flags] if "--task_name" not in flags else list(flags)
    args = run.parse_args(argv)
    args.enc_in = 3
    with pytest.raises(ValueError, match=message):
        get_model_class(args.model)(args)


def test_a_non_positive_patch_length_is_rejected_by_run(run_cli, capsys):
    code, _ = run_cli(*FORECAST, "--model", "PatchTST", "--data", "ETTh1", "--patch_len", "0")
    assert code == 2 and "--patch_len must be >= 1" in capsys.readouterr().err


def _mse(results: str) -> float:
    (setting,) = [d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))]
    return json.load(open(os.path.join(results, setting, "metrics.json")))["metrics"]["mse"]


# a few seconds per model on one thread: small widths, 40 steps of 32 windows at lr 1e-3, horizon 24
ETTH1_RUN = ("--data", "ETTh1", "--seq_len", "96", "--pred_len", "24", "--train_epochs", "1",
             "--max_train_steps", "40", "--learning_rate", "1e-3", "--threads", "1", "--batch_size", "32")


@pytest.mark.parametrize("name", ["DLinear", "PatchTST", "iTransformer", "GPT4TS"])
def test_each_learned_model_beats_repeat_last_on_etth1(tmp_path, tiny_gpt2, name):
    root = data_path("ETT")
    base = (*FORECAST, *ETTH1_RUN, "--root_path", root)
    flags = ("--llm", tiny_gpt2, "--llm_init", "random", "--llm_layers", "1") if name == "GPT4TS" else SMALL[name]
    common = ("--no_progress", "--no_plot")
    assert run.main([*base, "--model", "RepeatLast", "--results", str(tmp_path / "rl"),
                     "--checkpoints", str(tmp_path / "ck"), *common]) == 0
    assert run.main([*base, "--model", name, *flags, "--results", str(tmp_path / "m"),
                     "--checkpoints", str(tmp_path / "ck"), *common]) == 0
    naive, learned = _mse(str(tmp_path / "rl")), _mse(str(tmp_path / "m"))
    assert learned < 0.8 * naive, (name, learned, naive)

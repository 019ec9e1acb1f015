"""Long-term forecasting: loaders and borders, no look-ahead, shapes, end-to-end runs, scripts, a real-data check."""
from __future__ import annotations

import json
import os
import subprocess
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, data_path
from data_provider.defaults import apply_defaults
from data_provider.forecast import ForecastDataset, load_forecast_data
from run import build_parser


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """`--threads 1` sets torch's global thread count; give later tests in the session their default back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_args(*flags: str) -> Namespace:
    return apply_defaults(build_parser().parse_args(["--task_name", "long_term_forecast", "--model", "RepeatLast",
                                                    *flags]))


def write_layout(path, n: int, columns: list[str], seed: int = 0) -> pd.DataFrame:
    """A CSV in the Autoformer/TSLib layout: `date` then one column per variable (daily cycle plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    k = np.arange(len(columns))[None, :]
    values = (1 + k) * np.sin(2 * np.pi * t / 24 + k) + 0.01 * t + 10 * k + 0.2 * rng.standard_normal((n, len(columns)))
    df = pd.DataFrame(values, columns=columns)
    df.insert(0, "date", pd.date_range("2016-07-01", periods=n, freq="h").astype(str))
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    df.to_csv(path, index=False)
    return df


def only_setting(results: str) -> str:
    (setting,) = [d for d in os.listdir(results) if os.path.isdir(os.path.join(results, d))]
    return os.path.join(results, setting)


def crossalign_forecasts() -> bool:
    path = os.path.join(REPO, "models", "CrossAlign.py")
    return os.path.isfile(path) and "long_term_forecast" in open(path).read()


needs_crossalign = pytest.mark.skipif(not crossalign_forecasts(),
                                      reason="models/CrossAlign.py has no forecasting form yet")
# small enough for 2 shared CPU cores: the offline MiniLM (d=384) with one block, small PMD and Mamba
CA_TINY = ("--model", "CrossAlign", "--llm", "minilm", "--llm_layers", "1", "--pmd_size", "16",
           "--d_ssm", "16", "--ssm_layers", "1", "--lora_r", "4", "--threads", "1")
# one thread: on shared cores, two threads per process oversubscribe and run up to 10x slower


# ---- defaults and flag checks --------------------------------------------------------------

def test_defaults_come_from_the_table():
    args = make_args("--data", "ETTh1")
    assert (args.seq_len, args.label_len, args.pred_len, args.batch_size, args.train_epochs) == (96, 48, 96, 32, 10)
    assert (args.root_path, args.data_path, args.freq) == (os.path.join(".", "dataset", "ETT-small"), "ETTh1.csv", "h")
    ecl = make_args("--data", "electricity", "--seq_len", "48")
    assert (ecl.data, ecl.data_path, ecl.label_len, ecl.batch_size) == ("ECL", "electricity.csv", 24, 16)
    assert make_args("--data", "ILI").seq_len == 36


@pytest.mark.parametrize("flags, message", [
    (("--data", "Synthetic"), "unknown --data 'Synthetic' for long_term_forecast"),
    (("--data", "ETTh1", "--entity", "machine-1-1"), "--entity is meaningless"),
    (("--data", "ETTh1", "--anomaly_ratio", "1"), "only apply to --task_name anomaly_detection"),
    (("--data", "ETTh1", "--vus_window", "10"), "only applies to --task_name anomaly_detection"),
    (("--data", "custom", "--root_path", "x"), "needs --root_path DIR and --data_path"),
    (("--data", "ETTh1", "--label_len", "100"), "--label_len must be in"),
    (("--data", "ETTh1", "--pred_len", "0"), "--pred_len must be >= 1"),
])
def test_meaningless_flags_are_rejected(flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        make_args(*flags)


# ---- loaders and borders ---------------------------------------------------------------------

def test_etth1_borders_shapes_and_train_only_scaler():
    root = os.path.dirname(data_path("ETT", "ETTh1.csv"))
    args = make_args("--data", "ETTh1", "--root_path", root)
    data = load_forecast_data(args)
    month = 30 * 24
    assert data.bounds == {"train": (0, 12 * month), "val": (12 * month - 96, 16 * month),
                           "test": (16 * month - 96, 20 * month)}
    assert data.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"] and data.info["rows"] == 17420
    raw = pd.read_csv(os.path.join(root, "ETTh1.csv")).drop(columns="date").to_numpy()
    train = raw[:12 * month]
    expected = (raw[:20 * month] - train.mean(0)) / train.std(0)       # rows past month 20 are unused
    np.testing.assert_allclose(data.series, expected, rtol=1e-5, atol=1e-5)
    sizes = {split: len(ForecastDataset(data, split, 96, 48, 96)) for split in data.bounds}
    assert sizes == {"train": 8640 - 191, "val": 2880 - 95, "test": 2880 - 95}
    x, y = ForecastDataset(data, "test", 96, 48, 96)[0]
    assert x.shape == (96, 7) and y.shape == (144, 7)
    # the first test window forecasts the first row of month 17
    np.testing.assert_allclose(x.numpy(), expected[16 * month - 96:16 * month], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[-96:].numpy(), expected[16 * month:16 * month + 96], rtol=1e-5, atol=1e-5)


def test_ett_minute_borders_are_four_times_the_hourly(tmp_path):
    write_layout(tmp_path / "ETTm2.csv", 20 * 30 * 24 * 4 + 7, ["HUFL", "OT"])
    data = load_forecast_data(make_args("--data", "ETTm2", "--root_path", str(tmp_path)))
    m = 30 * 24 * 4
    assert data.bounds == {"train": (0, 12 * m), "val": (12 * m - 96, 16 * m), "test": (16 * m - 96, 20 * m)}
    assert make_args("--data", "ETTm2").freq == "t"


def test_ett_file_shorter_than_the_borders_is_rejected(tmp_path):
    write_layout(tmp_path / "ETTh2.csv", 5000, ["HUFL", "OT"])
    with pytest.raises(ValueError, match="needs 14400; is this the full ETTh2.csv"):
        load_forecast_data(make_args("--data", "ETTh2", "--root_path", str(tmp_path)))


@pytest.mark.parametrize("name, file, n_vars", [("ECL", "electricity.csv", 6), ("Traffic", "traffic.csv", 9)])
def test_electricity_and_traffic_layouts_split_70_10_20(tmp_path, name, file, n_vars):
    columns = [str(i) for i in range(n_vars - 1)] + ["OT"]
    df = write_layout(tmp_path / file, 1000, columns)
    data = load_forecast_data(make_args("--data", name, "--root_path", str(tmp_path), "--seq_len", "48",
                                        "--pred_len", "24"))
    assert data.bounds == {"train": (0, 700), "val": (700 - 48, 800), "test": (800 - 48, 1000)}
    assert data.channels == n_vars and data.columns == columns
    train = df[columns].to_numpy()[:700]
    np.testing.assert_allclose(data.series[:700].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.series[900], (df[columns].to_numpy()[900] - train.mean(0)) / train.std(0),
                               rtol=1e-5, atol=1e-5)
    lengths = [len(ForecastDataset(data, s, 48, 24, 24)) for s in ("train", "val", "test")]
    assert lengths == [700 - 71, 100 - 23, 200 - 23]


def test_features_s_and_ms_forecast_the_target_moved_last(tmp_path):
    df = write_layout(tmp_path / "mine.csv", 600, ["load", "OT", "temp"])
    common = ("--data", "custom", "--root_path", str(tmp_path), "--data_path", "mine.csv", "--seq_len", "24",
              "--pred_len", "12")
    ms = load_forecast_data(make_args(*common, "--features", "MS"))
    assert ms.columns == ["load", "temp", "OT"] and ms.channels == 3 and ms.target_channels == 1
    x, y = ForecastDataset(ms, "test", 24, 12, 12)[0]
    assert x.shape == (24, 3) and y.shape == (24, 1)
    np.testing.assert_array_equal(y[:12, 0].numpy(), x[-12:, 2].numpy())   # start token = end of lookback
    s = load_forecast_data(make_args(*common, "--features", "S"))
    assert s.columns == ["OT"] and s.channels == 1
    np.testing.assert_allclose(s.series[:, 0], ms.series[:, 2], rtol=1e-6)
    other = load_forecast_data(make_args(*common, "--features", "S", "--target", "load"))
    assert other.columns == ["load"]
    with pytest.raises(ValueError, match="target column 'power' not found.*pass --target"):
        load_forecast_data(make_args(*common, "--features", "MS", "--target", "power"))
    assert load_forecast_data(make_args(*common, "--target", "power")).columns == ["load", "OT", "temp"]  # M: any
    assert len(df) == 600


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Weather: file not found: .*weather.csv; download weather/weather.csv "
                                                r"from the Autoformer / Time-Series-Library"):
        load_forecast_data(make_args("--data", "Weather", "--root_path", str(tmp_path / "nowhere")))
    write_layout(tmp_path / "short.csv", 150, ["a", "OT"])
    with pytest.raises(ValueError, match=r"the train part has 105 rows .* one window needs --seq_len \+ --pred_len = 192"):
        load_forecast_data(make_args("--data", "custom", "--root_path", str(tmp_path), "--data_path", "short.csv"))
    pd.DataFrame({"time": [1, 2], "OT": [1.0, 2.0]}).to_csv(tmp_path / "nodate.csv", index=False)
    with pytest.raises(ValueError, match="no 'date' column"):
        load_forecast_data(make_args("--data", "custom", "--root_path", str(tmp_path), "--data_path", "nodate.csv"))
    pd.DataFrame({"date": ["a", "b"], "OT": ["x", "y"]}).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['OT'\]"):
        load_forecast_data(make_args("--data", "custom", "--root_path", str(tmp_path), "--data_path", "text.csv"))


# ---- no look-ahead -----------------------------------------------------------------------------

def _experiment(root: str, *flags: str):
    from exp.exp_long_term_forecasting import ExpLongTermForecast
    args = make_args("--data", "custom", "--root_path", root, "--data_path", "d.csv", "--seq_len", "48",
                     "--pred_len", "24", "--no_progress", *flags)
    return ExpLongTermForecast(args)


@pytest.mark.parametrize("model_flags", [
    ("--model", "RepeatLast"),
    pytest.param(CA_TINY, marks=needs_crossalign),
])
def test_perturbing_the_future_changes_neither_the_input_nor_the_forecast(tmp_path, model_flags):
    df = write_layout(tmp_path / "a" / "d.csv", 800, ["x", "y", "OT"])
    first = _experiment(str(tmp_path / "a"), *model_flags)
    for split, i in (("val", 3), ("test", 0), ("test", 57)):
        start = int(first.datasets[split].starts[i])
        end = start + 48                                       # first row after the lookback
        future = df.copy()
        future.iloc[end:, 1:] = future.iloc[end:, 1:] * 3 + 100  # everything after the lookback changes
        os.makedirs(tmp_path / "b", exist_ok=True)
        future.to_csv(tmp_path / "b" / "d.csv", index=False)
        second = _experiment(str(tmp_path / "b"), *model_flags)
        x1, y1 = first.datasets[split][i]
        x2, y2 = second.datasets[split][i]
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)
        assert not torch.allclose(y1[-24:], y2[-24:])          # the targets did change
        first.model.eval()
        second.model.eval()
        with torch.no_grad():
            p1, _ = first.predict(x1[None])
            p2, _ = second.predict(x2[None])
        torch.testing.assert_close(p1, p2)
    # training windows: rows after the training part (validation, test) do not reach them through the scaler
    later = df.copy()
    later.iloc[560:, 1:] = later.iloc[560:, 1:] * 3 + 100
    later.to_csv(tmp_path / "b" / "d.csv", index=False)
    second = _experiment(str(tmp_path / "b"), *model_flags)
    torch.testing.assert_close(first.datasets["train"][400][0], second.datasets["train"][400][0], rtol=0, atol=0)


# ---- shapes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_flags", [
    ("--model", "RepeatLast"),
    pytest.param(CA_TINY, marks=needs_crossalign),
])
@pytest.mark.parametrize("features, pred_len", [("M", 1), ("M", 24), ("MS", 96), ("S", 200)])
def test_forecast_shapes_for_several_horizons(tmp_path, model_flags, features, pred_len):
    write_layout(tmp_path / "d.csv", 3000, ["x", "y", "OT"])
    exp = _experiment(str(tmp_path), *model_flags, "--pred_len", str(pred_len), "--features", features)
    c_in, c_out = (1, 1) if features == "S" else (3, 3 if features == "M" else 1)
    x, y = next(iter(exp.train_loader))
    assert x.shape == (exp.args.batch_size, 48, c_in) and y.shape == (exp.args.batch_size, 24 + pred_len, c_out)
    exp.model.eval()
    with torch.no_grad():
        pred, aux = exp.predict(x[:5])
    assert pred.shape == (5, pred_len, c_out) and torch.isfinite(pred).all() and aux.dim() == 0
    total, task = exp._loss((x[:5], y[:5]))
    assert torch.isfinite(total) and total >= task - 1e-6


def test_repeat_last_repeats_the_last_value_and_refuses_anomaly_detection():
    from models.RepeatLast import Model
    model = Model(Namespace(task_name="long_term_forecast", pred_len=3))
    x = torch.arange(12.0).reshape(1, 4, 3)
    torch.testing.assert_close(model(x), torch.tensor([[[9.0, 10.0, 11.0]] * 3]))
    with pytest.raises(ValueError, match="forecasting baseline"):
        Model(Namespace(task_name="anomaly_detection", pred_len=3))


def test_a_smoke_budget_bounds_forecast_validation_too(tmp_path):
    from exp.exp_long_term_forecasting import ExpLongTermForecast
    write_layout(tmp_path / "data" / "d.csv", 2000, ["x", "OT"])
    flags = ("--data", "custom", "--root_path", str(tmp_path / "data"), "--data_path", "d.csv", "--seq_len", "32",
             "--pred_len", "16", "--batch_size", "8", "--threads", "1", "--no_progress",
             "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c"))
    full = ExpLongTermForecast(make_args(*flags))
    smoke = ExpLongTermForecast(make_args(*flags, "--max_train_steps", "3"))
    n_val = len(full.datasets["val"])
    assert len(full.val_loader.dataset) == n_val > 3 * 8
    kept = smoke.val_loader.dataset.indices
    assert len(smoke.val_loader) == 3 and len(kept) == 3 * 8
    assert kept[0] == 0 and kept[-1] == n_val - 1  # spread over the whole split, the same every epoch
    assert len(smoke.datasets["test"]) == len(full.datasets["test"])  # the test split is never bounded


# ---- end to end ----------------------------------------------------------------------------------

def test_repeat_last_end_to_end_matches_a_direct_computation(run_cli, tmp_path):
    df = write_layout(tmp_path / "data" / "d.csv", 700, ["x", "OT"])
    flags = ("--task_name", "long_term_forecast", "--model", "RepeatLast", "--data", "custom", "--root_path",
             str(tmp_path / "data"), "--data_path", "d.csv", "--seq_len", "32", "--pred_len", "16")
    code, results = run_cli(*flags)
    assert code == 0
    folder = only_setting(results)
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    metrics = payload["metrics"]
    # independent computation: scale with the first 70 % of rows, forecast = last lookback value
    n_train = int(700 * 0.7)        # 489, not 490: TSLib's int() of a float product, kept for comparability
    values = df[["x", "OT"]].to_numpy()
    scaled = (values - values[:n_train].mean(0)) / values[:n_train].std(0)
    starts = np.arange(560 - 32, 700 - 32 - 16 + 1)
    errors = np.stack([scaled[s + 32:s + 48] - scaled[s + 31] for s in starts])
    assert metrics["windows"] == len(starts)
    assert metrics["mse"] == pytest.approx(np.mean(errors ** 2), rel=1e-5)
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(errors)), rel=1e-5)
    pred, true = np.load(os.path.join(folder, "pred.npy")), np.load(os.path.join(folder, "true.npy"))
    assert pred.shape == true.shape == (len(starts), 16, 2)
    np.testing.assert_allclose(pred - true, -errors, atol=1e-5)
    row = pd.read_csv(os.path.join(results, "summary.csv")).iloc[0]
    assert (row["model"], row["data"], row["seq_len"], row["pred_len"]) == ("RepeatLast", "custom", 32, 16)
    assert row["mse"] == pytest.approx(metrics["mse"]) and row["mae"] == pytest.approx(metrics["mae"])
    assert "MSE" in open(os.path.join(folder, "report.md")).read()
    assert run_cli(*flags, "--is_training", "0")[0] == 0         # nothing to load for a model without weights


@needs_crossalign
def test_crossalign_tiny_run_end_to_end_and_reload(run_cli, tmp_path):
    write_layout(tmp_path / "data" / "d.csv", 700, ["x", "y", "OT"])
    flags = ("--task_name", "long_term_forecast", *CA_TINY, "--data", "custom", "--root_path",
             str(tmp_path / "data"), "--data_path", "d.csv", "--seq_len", "32", "--pred_len", "16",
             "--train_epochs", "2", "--max_train_steps", "4", "--batch_size", "16", "--learning_rate", "1e-3")
    code, results = run_cli(*flags)
    assert code == 0
    folder = only_setting(results)
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert np.isfinite(payload["metrics"]["mse"]) and np.isfinite(payload["metrics"]["mae"])
    assert len(payload["training"]["epochs"]) == 2 and payload["model"]["trainable_params"] > 0
    assert run_cli(*flags, "--is_training", "0")[0] == 0
    again = json.load(open(os.path.join(folder, "metrics.json")))
    assert again["metrics"]["mse"] == pytest.approx(payload["metrics"]["mse"], rel=1e-5)
    assert len(pd.read_csv(os.path.join(results, "summary.csv"))) == 2


# ---- scripts ---------------------------------------------------------------------------------------

SCRIPTS = ("ETTh1", "ETTh2", "ETTm1", "ETTm2", "Weather", "ECL", "Traffic")


def test_the_seven_scripts_parse_and_name_their_dataset():
    for name in SCRIPTS:
        path = os.path.join(REPO, "scripts", "long_term_forecast", f"{name}.sh")
        assert subprocess.run(["bash", "-n", path]).returncode == 0, name
        assert f"forecast.sh\" {name} " in open(path).read()


def test_script_runs_each_horizon_on_a_traffic_layout_file(tmp_path):
    write_layout(tmp_path / "traffic" / "traffic.csv", 900, ["0", "1", "2", "OT"])
    env = {**os.environ, "ROOT": str(tmp_path / "traffic"), "MODEL": "RepeatLast", "HORIZONS": "24 48",
           "EXTRA": f"--results {tmp_path / 'results'} --checkpoints {tmp_path / 'ck'} --no_progress"}
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "long_term_forecast", "Traffic.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert summary["pred_len"].tolist() == [24, 48] and set(summary["data"]) == {"Traffic"}
    assert set(summary["seq_len"]) == {96} and summary["mse"].notna().all()


# ---- real data: a short CrossAlign run beats repeating the last value -------------------------------

def _etth1_mse(run_cli, *flags: str) -> float:
    root = os.path.dirname(data_path("ETT", "ETTh1.csv"))
    code, results = run_cli("--task_name", "long_term_forecast", "--data", "ETTh1", "--root_path", root, *flags)
    assert code == 0
    rows = pd.read_csv(os.path.join(results, "summary.csv"))
    return float(rows.iloc[-1]["mse"])


@needs_crossalign
def test_short_crossalign_run_beats_repeat_last_on_etth1(run_cli):
    repeat = _etth1_mse(run_cli, "--model", "RepeatLast")
    trained = _etth1_mse(run_cli, *CA_TINY, "--train_epochs", "1", "--max_train_steps", "40", "--step", "8",
                         "--learning_rate", "1e-3")
    assert repeat == pytest.approx(1.2944, abs=1e-3)
    assert trained < 0.8 * repeat, (trained, repeat)


@pytest.mark.slow
@needs_crossalign
def test_crossalign_two_epochs_beats_repeat_last_on_etth1(run_cli):
    repeat = _etth1_mse(run_cli, "--model", "RepeatLast")
    trained = _etth1_mse(run_cli, "--model", "CrossAlign", "--llm", "minilm", "--llm_layers", "6",
                         "--train_epochs", "2", "--max_train_steps", "150", "--learning_rate", "1e-3", "--threads", "1")
    assert trained < 0.5 * repeat, (trained, repeat)

"""Data layer: readers per layout, checks with clear errors, cleaning, scaling, lazy windows, scoring coverage."""
from __future__ import annotations

import os
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest

from conftest import data_path
from data_provider.anomaly import PointScoreAccumulator, WindowDataset, load_anomaly_data, window_starts
from data_provider.defaults import apply_defaults
from data_provider.synthetic import ANOMALY_TYPES, generate_synthetic
from run import build_parser


def make_args(*flags: str) -> Namespace:
    return apply_defaults(build_parser().parse_args(["--model", "LinearAE", *flags]))


def write_npy(root, prefix: str, train: np.ndarray, test: np.ndarray, labels: np.ndarray) -> str:
    os.makedirs(root, exist_ok=True)
    np.save(os.path.join(root, f"{prefix}_train.npy"), train)
    np.save(os.path.join(root, f"{prefix}_test.npy"), test)
    np.save(os.path.join(root, f"{prefix}_test_label.npy"), labels)
    return str(root)


@pytest.fixture
def msl_like(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 3)).astype(np.float32)
    test = rng.normal(size=(300, 3)).astype(np.float32)
    labels = (rng.random(300) < 0.1).astype(np.float32)
    return write_npy(tmp_path / "MSL", "MSL", train, test, labels), train, test, labels


# ---- defaults and flag checks ------------------------------------------------------------

def test_dataset_defaults_come_from_the_table():
    args = make_args("--data", "SMAP")
    assert (args.seq_len, args.anomaly_ratio, args.root_path) == (105, 0.8, os.path.join(".", "dataset", "SMAP"))
    assert make_args("--data", "msl", "--win_size", "50").seq_len == 50  # alias, case-insensitive name


@pytest.mark.parametrize("flags, message", [
    (("--data", "NoSuchSet"), "unknown --data 'NoSuchSet'"),
    (("--data", "MSL", "--anomaly_ratio", "0"), "in (0, 50]"),
    (("--data", "MSL", "--anomaly_ratio", "60"), "in (0, 50]"),
    (("--data", "MSL", "--entity", "machine-1-1"), "--entity is meaningless"),
    (("--data", "UCR"), "needs --entity"),
    (("--data", "MSL", "--train_file", "a.csv"), "only apply to --data custom"),
    (("--data", "Synthetic", "--root_path", "x"), "drop --root_path"),
    (("--data", "MSL", "--test_step", "500"), "--test_step must be in"),
    (("--data", "MSL", "--batch_size", "0"), "--batch_size must be >= 1"),
])
def test_meaningless_flags_are_rejected(flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        make_args(*flags)


def test_run_main_reports_flag_errors_with_status_2(capsys):
    import run
    assert run.main(["--data", "MSL", "--anomaly_ratio", "70"]) == 2
    assert "--anomaly_ratio" in capsys.readouterr().err


# ---- readers and checks ---------------------------------------------------------------------

def test_npy_layout_split_scale_and_labels(msl_like):
    root, train, test, labels = msl_like
    data = load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "20"))
    assert data.train.shape == (400, 3) and data.val.shape == (100, 3) and data.test.shape == (300, 3)
    # scaler fitted on the training part only (not validation, not test)
    np.testing.assert_allclose(data.train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.val, (train[400:] - train[:400].mean(0)) / train[:400].std(0), rtol=1e-4, atol=1e-4)
    assert data.test_labels.dtype == np.int64 and (data.test_labels == labels).all()


def test_missing_folder_and_files_name_what_to_put_where(tmp_path, msl_like):
    with pytest.raises(FileNotFoundError, match="MSL_train.npy.*telemanom"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", str(tmp_path / "nowhere")))
    root = msl_like[0]
    os.remove(os.path.join(root, "MSL_test_label.npy"))
    with pytest.raises(FileNotFoundError, match="MSL_test_label.npy"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", root))


def test_label_count_channel_count_and_empty_file(tmp_path):
    rng = np.random.default_rng(1)
    root = write_npy(tmp_path / "a", "MSL", rng.normal(size=(300, 4)), rng.normal(size=(200, 4)), np.zeros(199))
    with pytest.raises(ValueError, match="199 labels for 200 test points"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "10"))
    root = write_npy(tmp_path / "b", "MSL", rng.normal(size=(300, 4)), rng.normal(size=(200, 5)), np.zeros(200))
    with pytest.raises(ValueError, match="train has 4 channels but test has 5"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "10"))
    root = write_npy(tmp_path / "c", "MSL", rng.normal(size=(300, 4)), rng.normal(size=(200, 4)), np.full(200, 2.0))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "10"))
    smd = tmp_path / "SMD"
    for part in ("train", "test", "test_label"):
        os.makedirs(smd / part)
        (smd / part / "machine-9-9.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_anomaly_data(make_args("--data", "SMD", "--root_path", str(smd), "--entity", "machine-9-9"))


def test_window_longer_than_a_split(msl_like):
    with pytest.raises(ValueError, match=r"--seq_len 150 is longer than the validation .* \(100 points\)"):
        load_anomaly_data(make_args("--data", "MSL", "--root_path", msl_like[0], "--seq_len", "150"))


def test_nonfinite_values_warn_with_count_and_are_replaced(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.normal(size=(300, 3))
    train[5, 0], train[6, 1], train[0, 2] = np.nan, np.inf, np.nan
    test = rng.normal(size=(100, 3))
    test[50, 1] = -np.inf
    root = write_npy(tmp_path / "MSL", "MSL", train, test, np.zeros(100))
    with pytest.warns(UserWarning, match="3 NaN/Inf"):
        data = load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "10"))
    assert all(np.isfinite(a).all() for a in (data.train, data.val, data.test))
    assert data.info["nonfinite_replaced"] == {"train": 3, "test": 1}


def test_constant_channel_stays_finite(tmp_path):
    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(300, 3)), rng.normal(size=(100, 3))
    train[:, 1] = 7.0
    test[:, 1] = 7.5
    root = write_npy(tmp_path / "MSL", "MSL", train, test, np.zeros(100))
    data = load_anomaly_data(make_args("--data", "MSL", "--root_path", root, "--seq_len", "10"))
    assert np.isfinite(data.test).all() and data.info["constant_channels"] == 1
    np.testing.assert_allclose(data.test[:, 1], 0.5)


def test_psm_and_swat_csv_layouts(tmp_path):
    rng = np.random.default_rng(4)
    psm = tmp_path / "PSM"
    psm.mkdir()
    cols = [f"f{i}" for i in range(3)]
    pd.DataFrame(rng.normal(size=(200, 3)), columns=cols).rename_axis("timestamp_(min)").reset_index() \
        .to_csv(psm / "train.csv", index=False)
    pd.DataFrame(rng.normal(size=(100, 3)), columns=cols).rename_axis("timestamp_(min)").reset_index() \
        .to_csv(psm / "test.csv", index=False)
    pd.DataFrame({"timestamp_(min)": range(100), "label": [0.0] * 90 + [1.0] * 10}).to_csv(psm / "test_label.csv", index=False)
    data = load_anomaly_data(make_args("--data", "PSM", "--root_path", str(psm), "--seq_len", "20"))
    assert data.test.shape == (100, 3) and data.test_labels.sum() == 10

    swat = tmp_path / "SWaT"
    swat.mkdir()
    frame = pd.DataFrame(rng.normal(size=(200, 4)), columns=[*cols, "Normal/Attack"])
    frame["Normal/Attack"] = 0
    frame.to_csv(swat / "swat_train2.csv", index=False)
    frame.iloc[:120].assign(**{"Normal/Attack": [0] * 100 + [1] * 20}).to_csv(swat / "swat2.csv", index=False)
    data = load_anomaly_data(make_args("--data", "SWaT", "--root_path", str(swat), "--seq_len", "20"))
    assert data.channels == 3 and data.test_labels.sum() == 20


def test_custom_csv_with_label_column_and_timestamp(tmp_path):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2024-01-01", periods=200, freq="min").astype(str))
    frame.to_csv(tmp_path / "train.csv", index=False)
    test = frame.iloc[:80].assign(is_anomaly=[0] * 70 + [1] * 10)
    test.to_csv(tmp_path / "test.csv", index=False)
    args = make_args("--data", "custom", "--train_file", str(tmp_path / "train.csv"),
                     "--test_file", str(tmp_path / "test.csv"), "--label_column", "is_anomaly", "--seq_len", "16")
    data = load_anomaly_data(args)
    assert data.channels == 2 and data.test_labels.sum() == 10
    with pytest.raises(ValueError, match="'label' is not a column"):
        load_anomaly_data(make_args("--data", "custom", "--train_file", str(tmp_path / "train.csv"),
                                    "--test_file", str(tmp_path / "test.csv"), "--label_column", "label"))


# ---- real files -------------------------------------------------------------------------------

def test_real_smd_machine_text_files():
    root = data_path("SMD")
    data = load_anomaly_data(make_args("--data", "SMD", "--root_path", root, "--entity", "machine-1-2"))
    assert data.channels == 38 and len(data.test) == 23694
    assert abs(data.test_labels.mean() - 0.0229) < 5e-4
    with pytest.raises(FileNotFoundError, match="Machines found: machine-1-2"):
        load_anomaly_data(make_args("--data", "SMD", "--root_path", root, "--entity", "machine-7-7"))


def test_real_ucr_file_name_encodes_labels():
    root = data_path("UCR")
    data = load_anomaly_data(make_args("--data", "UCR", "--root_path", root, "--entity", "135"))
    # 135_UCR_Anomaly_InternalBleeding16_1200_4187_4199: train 1200 points, anomaly 4187..4199 (1-based)
    assert len(data.train) + len(data.val) == 1200 and len(data.test) == 7501 - 1200
    assert data.test_labels.sum() == 13 and data.test_labels[4187 - 1 - 1200] == 1
    assert data.test_labels[4187 - 2 - 1200] == 0


# ---- synthetic generator ----------------------------------------------------------------------

def test_synthetic_is_seeded_and_has_all_five_types():
    a = generate_synthetic(2000, 4, 0.03, seed=7)
    b = generate_synthetic(2000, 4, 0.03, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3]))
    assert not np.array_equal(a[1], generate_synthetic(2000, 4, 0.03, seed=8)[1])
    train, test, labels, events = a
    assert {e["type"] for e in events} == set(ANOMALY_TYPES)
    assert abs(labels.mean() - 0.03) < 0.01 and train.shape == test.shape == (2000, 4)
    for e in events:  # the injected points really differ from the clean signal's range or context
        assert labels[e["start"]:e["end"]].all()


# ---- windows and scoring ------------------------------------------------------------------------

def test_windows_are_lazy_views():
    series = np.arange(50, dtype=np.float32).reshape(25, 2)
    starts, _ = window_starts(25, 5, 3)
    ds = WindowDataset(series, 5, starts)
    assert len(ds) == 8 and ds[2].shape == (5, 2) and ds[2][0, 0] == 12
    assert ds[2].untyped_storage().data_ptr() == ds.series.untyped_storage().data_ptr()


@pytest.mark.parametrize("n, win, step", [(250, 100, 100), (300, 100, 100), (250, 100, 30), (100, 100, 100),
                                           (105, 100, 1), (1001, 64, 64)])
def test_every_point_scored_exactly_once_or_averaged(n, win, step):
    starts, tail_covered = window_starts(n, win, step)
    acc = PointScoreAccumulator(n, win, starts, tail_covered)
    # window i reports, for each point, the point's own index: the result must be the identity
    idx = starts[:, None] + np.arange(win)[None, :]
    for first in range(0, len(starts), 7):  # in batches, in order
        acc.add(first, idx[first:first + 7].astype(float))
    np.testing.assert_array_equal(acc.result(), np.arange(n))
    if step == win:
        assert acc.count.max() == 1 and acc.count.min() == 1

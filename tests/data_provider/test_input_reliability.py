"""Inputs matched by meaning and values never silently damaged (issue 12, items 3 and 4).

Custom CSV columns are matched by name; unparsable cells, header-less and semicolon files, directories and
parser errors are clear errors naming the file; values too large to standardise are an error naming the
channel before training; leading NaNs are back-filled.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from data_provider.anomaly import load_anomaly_data
from data_provider.forecast import load_forecast_data
from data_provider.preprocess import StandardScaler, clean_nonfinite
from data_provider.readers import read_csv_frame
from test_data import make_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def files(tmp_path):
    """train.csv (a, b, c) and test.csv (a, b, c, label); returns (folder, train frame, test frame)."""
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    test = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    test["label"] = [0] * 110 + [1] * 10
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    return tmp_path, train, test


def custom(root, train="train.csv", test="test.csv", *flags):
    return make_args("--data", "custom", "--train_file", str(root / train), "--test_file", str(root / test),
                     "--seq_len", "16", *(flags or ("--label_column", "label")))


# ---- item 3: inputs matched by meaning ---------------------------------------------------------

def test_reordered_test_columns_give_the_same_data(files):
    root, _, test = files
    test[["c", "label", "a", "b"]].to_csv(root / "shuffled.csv", index=False)
    same, shuffled = load_anomaly_data(custom(root)), load_anomaly_data(custom(root, test="shuffled.csv"))
    np.testing.assert_array_equal(same.test, shuffled.test)
    np.testing.assert_array_equal(same.test_labels, shuffled.test_labels)


@pytest.mark.parametrize("edit, only", [
    (lambda t: t.rename(columns={"c": "z"}), "in the train file only: 'c'; in the test file only: 'z'"),
    (lambda t: t.drop(columns=["c"]), "in the train file only: 'c'"),
])
def test_renamed_or_missing_columns_list_both_headers(files, edit, only):
    root, _, test = files
    edit(test).to_csv(root / "other.csv", index=False)
    with pytest.raises(ValueError, match="do not match") as err:
        load_anomaly_data(custom(root, test="other.csv"))
    message = str(err.value)
    assert only in message and "train.csv' header: a, b, c" in message and "other.csv' header: a, b" in message


def test_one_unparsable_cell_is_reported_with_file_line_and_column(files):
    root, _, test = files
    bad = test.astype(object)
    bad.loc[57, "b"] = "oops"                                  # data row 57 is line 59 (after the header)
    bad.to_csv(root / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv.*1 cell.*line 59, column 'b': 'oops'"):
        load_anomaly_data(custom(root, test="bad.csv"))


def test_a_text_column_in_only_one_file_is_an_error_not_a_silent_drop(files):
    root, _, test = files
    test.assign(b="broken").to_csv(root / "text.csv", index=False)
    with pytest.raises(ValueError, match="numeric in one file, text in the other: 'b'"):
        load_anomaly_data(custom(root, test="text.csv"))


def test_integers_beyond_int64_are_numbers(files):
    root, train, test = files
    for frame, name in ((train, "train_big.csv"), (test, "test_big.csv")):
        frame = frame.assign(count=np.arange(len(frame)).astype(object))
        frame.loc[5, "count"] = 10 ** 20
        frame.to_csv(root / name, index=False)
    data = load_anomaly_data(custom(root, "train_big.csv", "test_big.csv"))
    assert data.channels == 4                                  # the count column is kept, not dropped as text
    assert read_csv_frame(str(root / "test_big.csv"))["count"][5] == 1e20


def test_headerless_files_are_detected_and_keep_their_first_row(files, capsys):
    root, train, test = files
    train.to_csv(root / "train_nh.csv", index=False, header=False)
    test.to_csv(root / "test_nh.csv", index=False, header=False)
    with pytest.raises(ValueError, match=r"no column names.*--label_column 3"):
        load_anomaly_data(custom(root, "train_nh.csv", "test_nh.csv"))
    assert "its columns are numbered 0..3 by position" in capsys.readouterr().out
    data = load_anomaly_data(custom(root, "train_nh.csv", "test_nh.csv", "--label_column", "3"))
    named = load_anomaly_data(custom(root))
    assert len(data.test) == 120                               # the first data row is not taken as a header
    np.testing.assert_array_equal(data.test, named.test)
    capsys.readouterr()
    load_anomaly_data(custom(root, "train_nh.csv", "test.csv"))  # one file named, one not: by position, said
    assert "matched by position" in capsys.readouterr().out


def test_a_header_of_column_numbers_stays_a_header(tmp_path):
    pd.DataFrame(np.ones((4, 3))).to_csv(tmp_path / "numbered.csv", index=False)   # header line "0,1,2"
    assert len(read_csv_frame(str(tmp_path / "numbered.csv"))) == 4


def test_semicolon_file_gets_a_delimiter_hint(files):
    root, train, _ = files
    train.to_csv(root / "semi.csv", index=False, sep=";")
    with pytest.raises(ValueError, match=r"semi\.csv' looks semicolon-separated .*sep=';'"):
        load_anomaly_data(custom(root, train="semi.csv"))


def test_directory_empty_parser_and_encoding_errors_name_the_file(files):
    root, _, _ = files
    os.mkdir(root / "folder")
    with pytest.raises(ValueError, match=r"--train_file '.*folder' is a directory, not a file"):
        load_anomaly_data(custom(root, train="folder"))
    (root / "quote.csv").write_text('a,b,c\n1,2,3\n4,"5,6\n7,8,9\n')
    with pytest.raises(ValueError, match=r"--train_file '.*quote\.csv' cannot be read as CSV"):
        load_anomaly_data(custom(root, train="quote.csv"))
    (root / "latin.csv").write_bytes("a,b,c\n1,2,3\n".encode() + "caf\xe9,1,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv' cannot be read as CSV"):
        load_anomaly_data(custom(root, train="latin.csv"))


def test_smd_text_file_bad_cell_names_line(tmp_path):
    smd = tmp_path / "SMD"
    rng = np.random.default_rng(1)
    for part, rows in (("train", rng.normal(size=(200, 2))), ("test", rng.normal(size=(100, 2))),
                       ("test_label", np.zeros((100, 1)))):
        os.makedirs(smd / part)
        pd.DataFrame(rows).to_csv(smd / part / "machine-1-1.txt", index=False, header=False)
    lines = (smd / "test" / "machine-1-1.txt").read_text().splitlines()
    lines[9] = "0.5,x"
    (smd / "test" / "machine-1-1.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"machine-1-1\.txt.*line 10, column '1': 'x'"):
        load_anomaly_data(make_args("--data", "SMD", "--root_path", str(smd), "--entity", "machine-1-1",
                                    "--seq_len", "10"))


def test_forecast_csv_errors_name_file_line_and_delimiter(tmp_path):
    n = 300
    frame = pd.DataFrame({"date": pd.date_range("2020", periods=n, freq="h").astype(str),
                          "x": np.arange(n, dtype=float), "OT": np.ones(n)})
    frame.to_csv(tmp_path / "semi.csv", index=False, sep=";")
    bad = frame.astype(object)
    bad.loc[77, "x"] = "n/a?"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    os.mkdir(tmp_path / "dir.csv")
    for name, message in (("semi.csv", "looks semicolon-separated"), ("bad.csv", r"line 79, column 'x': 'n/a\?'"),
                          ("dir.csv", "is a directory")):
        with pytest.raises(ValueError, match=message):
            load_forecast_data(make_args("--data", "custom", "--root_path", str(tmp_path), "--data_path", name,
                                         "--seq_len", "24", "--pred_len", "12"))


# ---- item 4: no silent damage to values --------------------------------------------------------

def test_overflowing_training_values_are_an_error_naming_channel_and_count(files):
    root, train, _ = files
    train.loc[100, "b"] = 1e300                                # its variance overflows float64
    train.to_csv(root / "huge.csv", index=False)
    with pytest.raises(ValueError, match=r"channel 'b' cannot be standardised: 1 value\(s\)"):
        load_anomaly_data(custom(root, train="huge.csv"))
    with pytest.raises(ValueError, match="channel 2 cannot be standardised"):  # unnamed channels by index
        StandardScaler().fit(np.array([[0.0, 1.0, 1e300], [1.0, 2.0, 3.0]]))


def test_unscorable_test_values_fail_before_training_not_blaming_the_detector(files, tmp_path, capsys):
    import run
    root, _, test = files
    test.loc[50, "b"] = 1e300
    test.to_csv(root / "test_huge.csv", index=False)
    status = run.main(["--data", "custom", "--train_file", str(root / "train.csv"), "--test_file",
                       str(root / "test_huge.csv"), "--label_column", "label", "--model", "LinearAE",
                       "--seq_len", "16", "--train_epochs", "1", "--max_train_steps", "2", "--threads", "1",
                       "--no_progress", "--results", str(tmp_path / "r"), "--checkpoints", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert status == 2
    assert "custom test: 1 value(s) in channel 'b'" in captured.err and "fix the detector" not in captured.err
    assert ">>> training" not in captured.out                  # refused before any training


def test_leading_nans_are_back_filled_and_an_offset_channel_keeps_its_shape(files):
    root, train, test = files
    train["c"] += 1000.0
    test["c"] += 1000.0
    train.loc[:9, "c"] = np.nan
    train.to_csv(root / "train_nan.csv", index=False)
    test.to_csv(root / "test_off.csv", index=False)
    with pytest.warns(UserWarning, match=r"10 NaN/Inf.*the 10 before a channel's first finite value by that "
                                         r"first finite value \(back-fill\)"):
        data = load_anomaly_data(custom(root, "train_nan.csv", "test_off.csv"))
    np.testing.assert_allclose(data.train[:10, 2], data.train[10, 2])
    assert 0.7 < data.test[:, 2].std() < 1.3                   # 0-filling shrank it to ~0.006


def test_all_nan_channel_becomes_zero_and_is_named():
    x = np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, np.inf]])
    with pytest.warns(UserWarning, match=r"channel 'y' had no finite value and were set to 0"):
        filled, count = clean_nonfinite(x, "train", "demo", ["x", "y"])
    assert count == 4 and filled.tolist() == [[1.0, 0.0], [1.0, 0.0], [3.0, 0.0]]


def test_cli_exit_status_2_without_traceback_for_renamed_columns(files):
    root, _, test = files
    test.rename(columns={"a": "A"}).to_csv(root / "renamed.csv", index=False)
    proc = subprocess.run([sys.executable, "run.py", "--data", "custom", "--train_file", str(root / "train.csv"),
                           "--test_file", str(root / "renamed.csv"), "--label_column", "label", "--model",
                           "LinearAE", "--results", str(root / "r"), "--checkpoints", str(root / "c")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CROSSALIGN_TRACEBACK": ""})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "in the test file only: 'A'" in proc.stderr

"""The TSB-AD reader (data_provider/readers.py `read_tsbad`): split at `tr`, labels, channels, entity resolution."""
from __future__ import annotations

import json
import os
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest

from conftest import data_path
from data_provider.anomaly import load_anomaly_data
from data_provider.defaults import apply_defaults
from data_provider.readers import read_tsbad, resolve_tsbad_file
from data_provider.specs import get_anomaly_spec
from run import build_parser
from test_pipeline import only_setting

SPEC = get_anomaly_spec("TSB-AD")
NAME_M = "007_Synth_id_3_Sensor_tr_300_1st_350.csv"
REAL = "001_NAB_id_1_Facility_tr_1007_1st_2014.csv"


def write_tsbad(folder, name: str = NAME_M, n: int = 500, channels: int = 3) -> tuple[str, pd.DataFrame]:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, channels)), columns=[f"Var_{i}" for i in range(channels)])
    frame["Label"] = 0
    frame.loc[350:369, "Label"] = 1
    frame.loc[420:424, "Label"] = 1
    path = os.path.join(folder, name)
    frame.to_csv(path, index=False)
    return path, frame


def read(root, entity):
    return read_tsbad(SPEC, str(root), Namespace(entity=entity))


def test_split_at_tr_with_labels_and_channels(tmp_path):
    _, frame = write_tsbad(tmp_path / "TSB-AD-M")
    train, test, labels = read(tmp_path, "007")
    values = frame.drop(columns="Label").to_numpy()
    assert train.shape == (300, 3) and test.shape == (200, 3) and labels.shape == (200,)
    np.testing.assert_allclose(train, values[:300])
    np.testing.assert_allclose(test, values[300:])
    assert labels.sum() == 25 and labels[50] == 1 and labels[49] == 0      # row 350 = test index 50 (1st)


def test_entity_by_id_name_and_file_name(tmp_path):
    path, _ = write_tsbad(tmp_path / "TSB-AD-M")
    for entity in ("007", "7", NAME_M, NAME_M[:-4]):
        assert resolve_tsbad_file(str(tmp_path), entity) == path
    direct, _ = write_tsbad(tmp_path / "flat", name="012_X_id_1_Y_tr_300_1st_350.csv")
    assert resolve_tsbad_file(str(tmp_path / "flat"), "12") == direct   # files directly in --root_path


def test_missing_and_ambiguous_entities_name_the_folder_and_ids(tmp_path):
    write_tsbad(tmp_path / "TSB-AD-M")
    with pytest.raises(ValueError, match=r"'42': no file .*TSB-AD-U.*available: TSB-AD-M/007_Synth"):
        read(tmp_path, "42")
    write_tsbad(tmp_path / "TSB-AD-U", name="007_Other_id_1_Web_tr_300_1st_350.csv", channels=1)
    with pytest.raises(ValueError, match="'007' is ambiguous: 2 files"):
        read(tmp_path, "007")
    assert read(tmp_path, "007_Other_id_1_Web_tr_300_1st_350")[0].shape == (300, 1)
    with pytest.raises(ValueError, match="no TSB-AD file found"):
        resolve_tsbad_file(str(tmp_path / "empty"), "1")


def test_bad_files_are_clear_errors(tmp_path):
    path, frame = write_tsbad(tmp_path, name="001_A_id_1_B_tr_900_1st_350.csv")
    with pytest.raises(ValueError, match="tr=900 but the file has 500 rows"):
        read(tmp_path, "1")
    os.remove(path)
    frame.drop(columns="Label").to_csv(os.path.join(tmp_path, "002_A_id_1_B_tr_300_1st_350.csv"), index=False)
    with pytest.raises(ValueError, match="no 'Label' column"):
        read(tmp_path, "2")
    with pytest.raises(ValueError, match="needs --entity"):
        read(tmp_path, None)
    with pytest.raises(ValueError, match="--data TSB-AD needs --entity"):
        apply_defaults(build_parser().parse_args(["--data", "TSB-AD", "--root_path", str(tmp_path)]))


def test_loader_defaults_and_validation_split(tmp_path):
    write_tsbad(tmp_path / "TSB-AD-M")
    flags = ["--model", "PyOD", "--data", "tsb-ad", "--root_path", str(tmp_path), "--entity", "7"]
    args = apply_defaults(build_parser().parse_args(flags))
    assert (args.data, args.seq_len, args.anomaly_ratio, args.model_id) == ("TSB-AD", 100, 1.0, "TSB-AD_7")
    data = load_anomaly_data(apply_defaults(build_parser().parse_args([*flags, "--seq_len", "50"])))
    assert (len(data.train), len(data.val), len(data.test)) == (240, 60, 200)   # validation = last 20 % of train
    assert data.channels == 3 and data.test_labels.sum() == 25


def test_real_file_is_read_as_its_readme_says():
    root = data_path("TSB-AD")
    train, test, labels = read(root, "001")
    assert train.shape == (1007, 1) and test.shape == (4031 - 1007, 1)
    assert labels.sum() == 343 and int(np.flatnonzero(labels)[0]) + 1007 == 2014
    np.testing.assert_allclose(train[:2, 0], [47.606, 42.58])
    assert resolve_tsbad_file(root, REAL) == resolve_tsbad_file(root, "1")


def test_run_py_pyod_on_the_real_file(run_cli):
    root = data_path("TSB-AD")
    code, results = run_cli("--model", "PyOD", "--detector", "IForest", "--data", "TSB-AD", "--root_path", root,
                            "--entity", "001", "--threads", "1")
    assert code == 0
    folder = only_setting(results)
    scores, labels = np.load(os.path.join(folder, "scores.npy")), np.load(os.path.join(folder, "labels.npy"))
    assert scores.shape == labels.shape == (3024,) and np.isfinite(scores).all() and labels.sum() == 343
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    assert payload["metrics"]["data"]["n_train"] == 806 and payload["model"]["pyod_window"] == 100
    assert 0 <= payload["metrics"]["threshold_free"]["auc_roc"] <= 1

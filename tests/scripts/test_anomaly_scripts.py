"""The anomaly-detection scripts: each names a dataset of the table, runs through anomaly.sh, and the old
paths still work."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import REPO
from data_provider.specs import ANOMALY_SPECS

SCRIPTS = ("SMD", "MSL", "SMAP", "PSM", "SWAT", "NIPS_TS_Swan", "NIPS_TS_Water", "UCR", "Synthetic")
TINY = ("--synthetic_length 800 --synthetic_channels 3 --seq_len 32 --d_model 16 --max_train_steps 3 "
        "--no_progress --no_plot --threads 1")


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_names_a_dataset_of_the_table(name):
    text = open(os.path.join(REPO, "scripts", "anomaly_detection", f"{name}.sh")).read()
    data = text.split('anomaly.sh" ')[1].split()[0]
    assert data in ANOMALY_SPECS
    assert os.path.exists(os.path.join(REPO, "scripts", f"{name}.sh"))  # the old path


@pytest.mark.parametrize("path", ["scripts/anomaly_detection/Synthetic.sh", "scripts/Synthetic.sh"])
def test_synthetic_script_runs(path, tmp_path):
    env = {**os.environ, "MODEL": "LinearAE", "EPOCHS": "1",
           "EXTRA": f"{TINY} --results {tmp_path}/r --checkpoints {tmp_path}/c"}
    done = subprocess.run(["bash", os.path.join(REPO, path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.path.exists(os.path.join(tmp_path, "r", "summary.csv"))

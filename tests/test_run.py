"""run.py's front door: --help, output folders checked before training, a diverged loss as exit 2, the
default thread count, and messages that name the variables of scripts/*.sh."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess

import pytest

import run
from utils import tools
from conftest import REPO

QUICK = ("--model", "LinearAE", "--synthetic_length", "600", "--synthetic_channels", "3", "--seq_len", "20",
         "--train_epochs", "1", "--max_train_steps", "2", "--no_progress", "--no_plot")


def test_help_shows_every_default_once_lists_models_and_datasets_and_ends_with_examples(capsys):
    with pytest.raises(SystemExit):
        run.main(["--help"])
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    assert not re.search(r"\(default[^)]*\) \(default", flat)  # argparse's default after the text's own
    options = [a for a in run.build_parser()._actions if a.option_strings and a.dest != "help"]
    for action in options:  # each flag's help states its default
        entry = flat.split(action.option_strings[-1] + " ", 1)[1].split("  --")[0]
        assert "default" in entry.lower(), action.dest
    assert "models: CrossAlign, LinearAE" in text and "anomaly_detection datasets: SMD, MSL" in text
    assert "long_term_forecast datasets: ETTh1" in text
    last = text.strip().splitlines()[-3:]
    assert all(line.strip().startswith("python run.py") for line in last)


def test_an_output_folder_under_a_file_is_rejected_before_training(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for flag in ("--results", "--checkpoints"):
        other = "--checkpoints" if flag == "--results" else "--results"
        rc = run.main([*QUICK, flag, str(blocker / "out"), other, str(tmp_path / "ok")])
        out = capsys.readouterr()
        assert rc == 2 and f"{flag} {blocker / 'out'}: {blocker} is a file, not a folder" in out.err
        assert ">>> training" not in out.out and "Traceback" not in out.err


def test_a_full_disk_is_found_before_training(tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    rc = run.main([*QUICK, "--checkpoints", str(tmp_path / "ck"), "--results", str(tmp_path / "res")])
    out = capsys.readouterr()
    assert rc == 2 and "--checkpoints" in out.err and "MiB free, a checkpoint needs about" in out.err
    assert ">>> training" not in out.out and not os.path.exists(tmp_path / "ck")


def test_a_loss_that_becomes_nan_is_exit_2_with_the_fix(tmp_path, capsys):
    rc = run.main(["--model", "USAD", "--synthetic_length", "600", "--train_epochs", "1", "--learning_rate", "1",
                   "--no_progress", "--no_plot", "--checkpoints", str(tmp_path / "ck"),
                   "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc == 2 and "training loss became nan" in err and "lower --learning_rate" in err
    assert "Traceback" not in err


def test_default_threads_follow_the_load_and_are_recorded(tmp_path, capsys, monkeypatch):
    import torch
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(tools, "busy_cores", lambda cpus, interval=0.5: 64.0)  # a very busy machine
    try:
        assert run.main([*QUICK, "--checkpoints", str(tmp_path / "ck"), "--results", str(tmp_path / "res")]) == 0
    finally:
        torch.set_num_threads(before)
    assert "threads: 1 (of" in capsys.readouterr().out
    (path,) = glob.glob(str(tmp_path / "res" / "*" / "metrics.json"))
    metrics = json.load(open(path))
    assert metrics["provenance"]["cpu_threads"] == 1 and metrics["args"]["threads"] == 1


def test_messages_under_a_script_name_its_variables(monkeypatch):
    monkeypatch.setenv("CROSSALIGN_SCRIPT", "scripts/anomaly_detection/SMD.sh")
    monkeypatch.setenv("CROSSALIGN_SCRIPT_VARS", "data=- root_path=ROOT entity=ENTITY")
    text = run._script_hint("--data SMD needs --entity; check --root_path and --dropout")
    assert text.endswith("(running scripts/anomaly_detection/SMD.sh: set --entity with ENTITY=; "
                         "set --root_path with ROOT=; pass --dropout in EXTRA='...')")
    monkeypatch.delenv("CROSSALIGN_SCRIPT")
    assert run._script_hint("--entity x") == "--entity x"


def test_smd_script_without_entity_lists_the_machines_and_the_variable(tmp_path):
    for part in ("train", "test", "test_label"):
        (tmp_path / part).mkdir()
        (tmp_path / part / "machine-1-2.txt").write_text("0,0\n")
    env = {**os.environ, "ROOT": str(tmp_path), "MODEL": "LinearAE", "OMP_NUM_THREADS": "1"}
    env.pop("CROSSALIGN_SCRIPT", None)
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "anomaly_detection", "SMD.sh")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "per-machine files (machine-1-2)" in done.stderr and "--entity machine-1-2" in done.stderr
    assert "(running scripts/anomaly_detection/SMD.sh: set --entity with ENTITY=; set --root_path with ROOT=)" \
        in done.stderr


def test_argparse_errors_under_a_script_name_its_variables(monkeypatch, capsys):
    monkeypatch.setenv("CROSSALIGN_SCRIPT", "scripts/anomaly_detection/anomaly.sh")
    monkeypatch.setenv("CROSSALIGN_SCRIPT_VARS", "model=MODEL")
    with pytest.raises(SystemExit) as done:
        run.main(["--bf16", "3"])
    assert done.value.code == 2
    assert "(running scripts/anomaly_detection/anomaly.sh: pass --bf16 in EXTRA='...')" in capsys.readouterr().err


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_fast_bf16_matmuls_warns_and_the_cpu_is_recorded(tmp_path, capsys, monkeypatch,
                                                                                native):
    monkeypatch.setattr("utils.provenance.cpu_bf16_native", lambda: native)
    out = tmp_path / "res"
    assert run.main([*QUICK, "--bf16", "1", "--threads", "1", "--checkpoints", str(tmp_path / "ck"),
                     "--results", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("warning: --bf16 1 on this CPU" in text and "use --bf16 0" in text) == (not native)
    (path,) = glob.glob(str(out / "*" / "metrics.json"))
    prov = json.load(open(path))["provenance"]
    assert prov["cpu"] and prov["cpu_capability"] and prov["cpu_bf16_native"] in (True, False, None)

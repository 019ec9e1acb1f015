"""`--resume`: a run SIGKILLed after an epoch continues from `resume.pt` and ends where an uninterrupted run ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import torch

from conftest import REPO
from test_pipeline import TINY, only_setting

# 4 epochs, no early stop, dropout on (the RNG state must be restored too), one thread (bit-for-bit)
FLAGS = (*TINY[:TINY.index("--train_epochs")], "--train_epochs", "4", "--batch_size", "16", "--d_model", "32",
         "--learning_rate", "1e-3", "--lradj", "cosine", "--patience", "10", "--dropout", "0.2", "--threads", "1")

# run.py in a child process that SIGKILLs itself as soon as the resume state of epoch KILL_AFTER is on disk
KILLER = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import exp.exp_basic as eb
write = eb.ExpBasic._write_resume_state
def write_then_die(self, path, epochs_done, *a, **k):
    write(self, path, epochs_done, *a, **k)
    if epochs_done == {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)
eb.ExpBasic._write_resume_state = write_then_die
import run
sys.exit(run.main(sys.argv[1:]))
"""


def _dirs(root) -> list[str]:
    return ["--checkpoints", str(root / "checkpoints"), "--results", str(root / "results"), "--no_progress", "--no_plot"]


def _outputs(root) -> tuple[dict, dict, np.ndarray]:
    folder = only_setting(str(root / "results"))
    payload = json.load(open(os.path.join(folder, "metrics.json")))
    ckpt = torch.load(os.path.join(root, "checkpoints", os.path.basename(folder), "checkpoint.pt"), weights_only=True)
    return payload, ckpt, np.load(os.path.join(folder, "scores.npy"))


def test_killed_run_resumes_to_the_same_best_checkpoint_and_metrics(tmp_path, one_thread):
    import run
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run.main([*FLAGS, *_dirs(whole)]) == 0

    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=REPO, kill_after=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), *FLAGS, *_dirs(killed)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    setting = os.listdir(killed / "checkpoints")[0]
    state = torch.load(killed / "checkpoints" / setting / "resume.pt", weights_only=True)
    assert state["epochs_done"] == 1 and not os.path.exists(killed / "results" / setting / "metrics.json")

    assert run.main([*FLAGS, *_dirs(killed), "--resume", "1"]) == 0
    (p_whole, c_whole, s_whole), (p_res, c_res, s_res) = _outputs(whole), _outputs(killed)
    assert c_res["epoch"] == c_whole["epoch"] and c_res["val_loss"] == c_whole["val_loss"]
    for name, tensor in c_whole["model"].items():
        torch.testing.assert_close(c_res["model"][name], tensor, rtol=0, atol=0, msg=name)
    np.testing.assert_array_equal(s_res, s_whole)
    untimed = lambda metrics: {k: v for k, v in metrics.items() if k != "seconds"}  # noqa: E731
    assert untimed(p_res["metrics"]) == untimed(p_whole["metrics"])
    strip = lambda epochs: [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]  # noqa: E731
    assert strip(p_res["training"]["epochs"]) == strip(p_whole["training"]["epochs"])
    assert len(p_res["training"]["epochs"]) == 4


def test_resume_without_state_starts_fresh_and_changed_flags_are_refused(run_cli, tmp_path, capsys, one_thread):
    flags = (*TINY, "--threads", "1", "--resume", "1")
    assert run_cli(*flags)[0] == 0
    assert "no resume state at" in capsys.readouterr().out
    # finished run: --resume restores the last epoch, trains nothing more and tests the best checkpoint
    assert run_cli(*flags)[0] == 0
    assert "continuing after epoch 2" in capsys.readouterr().out
    (setting,) = os.listdir(tmp_path / "checkpoints")
    state_file = tmp_path / "checkpoints" / setting / "resume.pt"
    state = torch.load(state_file, weights_only=True)
    state["args"]["dropout"] = 0.5
    torch.save(state, state_file)
    assert run_cli(*flags)[0] == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--dropout 0.5" in err and "delete the file" in err


def test_old_checkpoint_without_resume_fields_still_tests(run_cli, tmp_path, one_thread):
    assert run_cli(*TINY, "--threads", "1")[0] == 0
    (setting,) = os.listdir(tmp_path / "checkpoints")
    path = tmp_path / "checkpoints" / setting / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    torch.save({"model": state["model"]}, path)  # the oldest layout: weights only
    os.remove(tmp_path / "checkpoints" / setting / "resume.pt")
    assert run_cli(*TINY, "--threads", "1", "--is_training", "0")[0] == 0


def test_unreadable_resume_state_is_a_clear_error(run_cli, tmp_path, capsys, one_thread):
    assert run_cli(*TINY, "--threads", "1")[0] == 0
    (setting,) = os.listdir(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / setting / "resume.pt").write_text("garbage")
    assert run_cli(*TINY, "--threads", "1", "--resume", "1")[0] == 2
    assert "cannot read" in capsys.readouterr().err

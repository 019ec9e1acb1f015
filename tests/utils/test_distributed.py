"""torchrun on CPU (gloo, 2 processes) against one process with the same global batch, and the shard helpers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from test_pipeline import only_setting
from utils.distributed import ShardSampler, shard_bounds, torchrun_command

# 1235 points: 988 training points -> 240 windows (L=32, step 4) = 15 global batches of 16, so each of the
# 2 processes gets exactly 8 windows a step and DDP's averaged gradient is the 1-process batch's gradient.
# Dropout 0: the processes draw the same random numbers, but a 1-process run draws them for 16 windows at once.
FLAGS = ("--model", "LinearAE", "--data", "Synthetic", "--synthetic_length", "1235", "--synthetic_channels", "3",
         "--seq_len", "32", "--step", "4", "--train_epochs", "2", "--batch_size", "16", "--d_model", "32",
         "--learning_rate", "1e-3", "--dropout", "0", "--threads", "1", "--no_progress", "--no_plot", "--use_gpu", "0")
TOLERANCE = 1e-4  # relative: the 2 processes sum in another order (fp32 rounding), nothing else differs

# rank 1 gets a window longer than its data: it must stop every rank with the clear error, not hang rank 0
BAD_RANK = """
import os, sys
sys.path.insert(0, {repo!r})
import run
argv = sys.argv[1:] + (["--seq_len", "5000"] if os.environ["RANK"] == "1" else [])
sys.exit(run.main(argv))
"""


def _torchrun(script: str, flags, tmp_path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CROSSALIGN_DIST_TIMEOUT_MIN": "2"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           script, *flags]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def _dirs(root) -> tuple[str, ...]:
    return ("--checkpoints", str(root / "checkpoints"), "--results", str(root / "results"))


def test_two_gloo_processes_match_one_process(tmp_path, one_thread):
    import run
    one, two = tmp_path / "one", tmp_path / "two"
    assert run.main([*FLAGS, *_dirs(one)]) == 0
    proc = _torchrun("run.py", (*FLAGS, *_dirs(two)), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(rank 0 of 2)" in proc.stdout and proc.stdout.count("results written to") == 1  # rank 1 is silent
    a, b = (json.load(open(os.path.join(only_setting(str(r / "results")), "metrics.json"))) for r in (one, two))
    val = lambda p: [e["val_loss"] for e in p["training"]["epochs"]]  # noqa: E731
    print("val losses, 1 vs 2 processes:", val(a), val(b))
    np.testing.assert_allclose(val(b), val(a), rtol=TOLERANCE)
    assert [e["steps"] for e in b["training"]["epochs"]] == [15, 15]
    s1, s2 = (np.load(os.path.join(only_setting(str(r / "results")), "scores.npy")) for r in (one, two))
    assert s2.shape == s1.shape == (1235,)  # every test point scored, in time order
    print("max relative score difference:", float(np.max(np.abs(s2 - s1) / np.abs(s1))))
    np.testing.assert_allclose(s2, s1, rtol=TOLERANCE, atol=1e-7)
    for key in ("auc_roc", "auc_pr", "vus_pr"):
        if key in a["metrics"]:
            assert abs(a["metrics"][key] - b["metrics"][key]) < 1e-3, key
    assert len(pd.read_csv(two / "results" / "summary.csv")) == 1  # rank 0 alone appended its row
    assert sorted(os.listdir(two / "checkpoints" / os.listdir(two / "checkpoints")[0])) == \
        ["args.json", "checkpoint.pt", "resume.pt"]


def test_a_rank_with_bad_input_stops_every_rank_with_the_error(tmp_path):
    script = tmp_path / "bad_rank.py"
    script.write_text(BAD_RANK.format(repo=REPO))
    proc = _torchrun(str(script), (*FLAGS, *_dirs(tmp_path)), tmp_path)
    assert proc.returncode != 0
    assert "error: Synthetic: window --seq_len 5000 is longer than" in proc.stderr
    assert not os.path.exists(tmp_path / "results" / "summary.csv")


def test_global_batch_must_divide_among_processes(run_cli, capsys, monkeypatch):
    from utils import distributed
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    flags = [f for f in FLAGS if f not in ("--no_progress", "--no_plot")]
    flags[flags.index("--batch_size") + 1] = "15"
    assert run_cli(*flags)[0] == 2
    assert "--batch_size 15 is the global batch and must divide evenly among the 2" in capsys.readouterr().err


@pytest.mark.parametrize("n,world", [(10, 3), (2, 4), (240, 2), (7, 1)])
def test_shards_cover_every_item_once_in_order(n, world):
    items = [i for r in range(world) for i in ShardSampler(n, world, r)]
    assert items == list(range(n))
    assert max(len(ShardSampler(n, world, r)) for r in range(world)) - min(
        len(ShardSampler(n, world, r)) for r in range(world)) <= 1
    assert shard_bounds(n, world, world - 1)[1] == n


def test_use_multi_gpu_outside_torchrun_prints_the_command(capsys, monkeypatch):
    import run
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert run.main(["--model", "LinearAE", "--use_multi_gpu", "--devices", "0,1", "--seq_len", "32"]) == 2
    err = capsys.readouterr().err
    assert "CUDA_VISIBLE_DEVICES=0,1 torchrun --standalone --nproc_per_node 2 run.py --model LinearAE --seq_len 32" in err
    assert torchrun_command(["--devices=2,3", "--use_multi_gpu", "--data", "SMD"], "2,3") == \
        "CUDA_VISIBLE_DEVICES=2,3 torchrun --standalone --nproc_per_node 2 run.py --data SMD"


def test_two_processes_evaluate_a_forecast_as_one(tmp_path, one_thread):
    """Sharded forecast evaluation: the MSE/MAE sums and the pred/true arrays gathered back in window order."""
    import run
    from test_forecast import write_layout
    write_layout(tmp_path / "data" / "d.csv", 700, ["x", "OT"])
    flags = ("--task_name", "long_term_forecast", "--model", "RepeatLast", "--data", "custom", "--root_path",
             str(tmp_path / "data"), "--data_path", "d.csv", "--seq_len", "32", "--pred_len", "16", "--threads", "1",
             "--no_progress", "--use_gpu", "0")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run.main([*flags, *_dirs(one)]) == 0
    proc = _torchrun("run.py", (*flags, *_dirs(two)), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.load(open(os.path.join(only_setting(str(r / "results")), "metrics.json")))["metrics"]
            for r in (one, two))
    assert "(rank 0 of 2)" in proc.stdout and len(pd.read_csv(two / "results" / "summary.csv")) == 1
    assert b["windows"] == a["windows"] and abs(b["mse"] - a["mse"]) <= 1e-9 * a["mse"]
    assert abs(b["mae"] - a["mae"]) <= 1e-9 * a["mae"]
    for name in ("pred.npy", "true.npy"):
        np.testing.assert_array_equal(*(np.load(os.path.join(only_setting(str(r / "results")), name))
                                        for r in (two, one)))

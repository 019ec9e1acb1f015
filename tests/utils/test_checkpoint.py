"""Checkpoints: damaged, foreign or mismatched files end in a message naming the file and the fix (exit 2);
checkpoints hold the trainable tensors and buffers, not the frozen backbone, whose digest guards the load;
version-1 (full) checkpoints still load."""
from __future__ import annotations

import errno
import glob
import json
import os
import shutil

import pytest
import torch
from torch import nn

import run
from utils import checkpoint as ck

QUICK = ("--model", "LinearAE", "--synthetic_length", "600", "--synthetic_channels", "4", "--seq_len", "20",
         "--train_epochs", "1", "--max_train_steps", "2", "--no_progress", "--no_plot", "--threads", "1")


def _main(folder, *flags: str) -> int:
    return run.main([*QUICK, *flags, "--checkpoints", str(folder / "ck"), "--results", str(folder / "res")])


def _metrics(folder) -> dict:
    (path,) = glob.glob(str(folder / "res" / "*" / "metrics.json"))
    metrics = json.load(open(path))["metrics"]
    metrics.pop("seconds", None)  # timings differ between runs
    return metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained LinearAE run: (folder, checkpoint path, its bytes)."""
    folder = tmp_path_factory.mktemp("trained")
    assert _main(folder) == 0
    (path,) = glob.glob(str(folder / "ck" / "*" / "checkpoint.pt"))
    return folder, path, open(path, "rb").read()


class Foreign:  # a class torch's weights_only loader refuses
    pass


def _plain_state_dict(path):
    torch.save(torch.load(path, weights_only=True)["model"], path)


CORRUPTIONS = {
    "truncated": (lambda p, good: open(p, "wb").write(good[: len(good) // 2]), "damaged or not a torch file"),
    "empty": (lambda p, good: open(p, "wb").write(b""), "is empty"),
    "foreign bytes": (lambda p, good: open(p, "wb").write(b"hello\n" * 50), "damaged or not a torch file"),
    "foreign class": (lambda p, good: torch.save({"model": {}, "x": Foreign()}, p), "not a CrossAlign checkpoint"),
    "plain state_dict": (lambda p, good: _plain_state_dict(p), "plain state_dict"),
    "no tensors": (lambda p, good: torch.save({"model": {}}, p), "is for another model"),
    "a list": (lambda p, good: torch.save([1, 2], p), "not a run.py checkpoint"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_bad_checkpoint_is_a_clear_error(trained, case, capsys):
    folder, path, good = trained
    corrupt, expected = CORRUPTIONS[case]
    corrupt(path, good)
    try:
        assert _main(folder, "--is_training", "0") == 2
    finally:
        open(path, "wb").write(good)
    err = capsys.readouterr().err
    assert expected in err and path in err and ("--is_training 1" in err or "run.py" in err)
    assert "weights_only" not in err and "Traceback" not in err


def test_an_unreadable_checkpoint_names_the_file(trained, monkeypatch, capsys):
    folder, path, _ = trained

    def refuse(*a, **kw):  # root reads any file, so the permission error is simulated
        raise PermissionError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(torch, "load", refuse)
    assert _main(folder, "--is_training", "0") == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {path}: Permission denied" in err and "chmod" in err


def test_a_checkpoint_of_other_channels_says_so(trained, capsys):
    folder, path, _ = trained
    # the data flags are in the setting's digest, so only a checkpoint copied by hand into another
    # setting's folder meets another data shape: copy it where the 3-channel run looks
    other = folder / "other"
    assert _main(other, "--is_training", "0", "--synthetic_channels", "3") == 2
    missing = capsys.readouterr().err.split("no checkpoint at ")[1].split(";")[0]
    os.makedirs(os.path.dirname(missing))
    shutil.copy(path, missing)
    assert _main(other, "--is_training", "0", "--synthetic_channels", "3") == 2
    err = capsys.readouterr().err
    assert "does not fit this model" in err and missing in err
    assert "4 channels (now 3), --synthetic_channels 4 (now 3)" in err


def test_an_old_full_checkpoint_still_loads(trained, capsys):
    folder, path, good = trained
    expected = _metrics(folder)
    state = torch.load(path, weights_only=True)
    assert state["format"] == ck.FORMAT and state["version"] == ck.VERSION
    torch.save({"model": state["model"], "epoch": 1, "val_loss": 0.0, "args": state["args"]}, path)  # version 1
    try:
        assert _main(folder, "--is_training", "0") == 0
    finally:
        open(path, "wb").write(good)
    assert _metrics(folder) == expected


class _Half(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.frozen = nn.Linear(8, 8).requires_grad_(False)
        self.head = nn.Linear(8, 2)
        self.register_buffer("memory", torch.randn(3, 8))


def test_split_state_keeps_trainables_and_buffers_and_digests_the_frozen():
    saved, frozen = ck.split_state(_Half())
    assert set(saved) == {"head.weight", "head.bias", "memory"}
    assert set(frozen) == {"frozen.weight", "frozen.bias"}
    assert ck.frozen_digest(frozen) == ck.frozen_digest(ck.split_state(_Half())[1])
    assert ck.frozen_digest(frozen) != ck.frozen_digest(ck.split_state(_Half(seed=1))[1])


def test_a_backbone_with_other_frozen_weights_is_refused(tmp_path):
    a, b = _Half(), _Half(seed=1)
    b.head.load_state_dict(a.head.state_dict())
    path = str(tmp_path / "c.pt")
    ck.save_checkpoint(path, a, {"backbone": "x"}, epoch=1)
    with pytest.raises(ck.CheckpointError, match="frozen weights differ"):
        ck.load_into(b, path, {}, {"backbone": "x"})
    c = _Half()
    c.head.reset_parameters()
    ck.load_into(c, path, {}, {"backbone": "x"})
    assert torch.equal(c.head.weight, a.head.weight)


def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model, path = _Half(), str(tmp_path / "c.pt")
    ck.save_checkpoint(path, model, {}, epoch=1)

    def full(obj, f, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ck.CheckpointError, match="No space left on device; the last good checkpoint is kept"):
        ck.save_checkpoint(path, model, {}, epoch=2)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


def _crossalign(folder, backbone: str, *flags: str) -> int:
    return run.main(["--model", "CrossAlign", "--llm", backbone, "--llm_layers", "2", "--n_heads", "4",
                     "--d_ssm", "16", "--ssm_layers", "1", "--pmd_size", "16", "--synthetic_length", "500",
                     "--synthetic_channels", "3", "--seq_len", "24", "--train_epochs", "1", "--max_train_steps", "2",
                     "--no_progress", "--no_plot", "--threads", "1", *flags,
                     "--checkpoints", str(folder / "ck"), "--results", str(folder / "res")])


def test_crossalign_checkpoint_omits_the_frozen_backbone_and_refuses_another(tmp_path, capsys):
    """A pretrained (saved) tiny GPT-2: the checkpoint holds no base weight; other weights are refused."""
    from transformers import GPT2Config, GPT2Model
    config = GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=300, n_positions=128)
    backbone = str(tmp_path / "gpt2")
    torch.manual_seed(0)
    GPT2Model(config).save_pretrained(backbone)
    assert _crossalign(tmp_path, backbone) == 0
    (path,) = glob.glob(str(tmp_path / "ck" / "*" / "checkpoint.pt"))
    state = torch.load(path, weights_only=True)
    assert not [k for k in state["model"] if "base_layer" in k or k.endswith(("c_attn.weight", "wpe.weight"))]
    assert any("lora_A" in k for k in state["model"]) and "retrieval.memory" in state["model"]
    assert state["frozen"]["numel"] > 0 and state["frozen"]["identity"]["backbone"] == backbone
    expected = _metrics(tmp_path)
    assert _crossalign(tmp_path, backbone, "--is_training", "0") == 0
    assert _metrics(tmp_path) == expected
    torch.manual_seed(1)
    GPT2Model(config).save_pretrained(backbone)  # the same name, other weights
    capsys.readouterr()
    assert _crossalign(tmp_path, backbone, "--is_training", "0") == 2
    assert "frozen weights differ" in capsys.readouterr().err

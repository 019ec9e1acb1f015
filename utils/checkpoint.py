"""Small checkpoints: what training changed, plus the identity and a digest of what it did not.

A checkpoint (format ``crossalign-checkpoint``, version 2) is a dict read with
``torch.load(weights_only=True)`` (tensors and plain containers only; no code runs):

    format, version     "crossalign-checkpoint", 2
    model               trainable parameters and every persistent buffer (LoRA, heads, the
                        principal memory, the frequency branch, ...)
    frozen              {"digest": sha256 of the frozen parameters (names, dtypes, shapes, bytes),
                         "tensors": how many, "numel": their size, "identity": the backbone's record}
    epoch, val_loss, args

The frozen base weights of a backbone are not stored: the model is rebuilt from its source
(``--llm``) before loading, and a backbone whose frozen weights hash differently is refused.
Version 1 checkpoints (``{"model": full state_dict, ...}``) still load, strictly.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import tempfile
from typing import Any

import torch
from torch import nn

from utils.io import save_torch

FORMAT, VERSION = "crossalign-checkpoint", 2
# flags that never change the model: left out of the "trained with other flags" hint
_RUN_ONLY = {"is_training", "checkpoints", "results", "no_progress", "no_plot", "threads", "num_workers", "use_gpu",
             "gpu", "itr", "des", "model_id"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, written or used; the message names the file and the fix.
    A ValueError so that run.py reports it as bad input (message, exit status 2)."""


def split_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(saved, frozen): trainable parameters and persistent buffers; parameters with requires_grad False."""
    saved, frozen = {}, {}
    for name, value in model.state_dict(keep_vars=True).items():
        if isinstance(value, nn.Parameter) and not value.requires_grad:
            frozen[name] = value.detach()
        else:
            saved[name] = value.detach()
    return saved, frozen


def frozen_digest(frozen: dict[str, torch.Tensor]) -> str:
    """sha256 over the frozen tensors in name order: name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(frozen):
        t = frozen[name].cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_bytes(model: nn.Module) -> int:
    """Bytes of tensor data a checkpoint of `model` holds (the trainable parameters and buffers)."""
    saved, _ = split_state(model)
    return sum(t.numel() * t.element_size() for t in saved.values())


def save_checkpoint(path: str, model: nn.Module, identity: dict, **meta: Any) -> None:
    """Write the small checkpoint atomically: a failed write (full disk) keeps the previous file intact."""
    saved, frozen = split_state(model)
    state = {"format": FORMAT, "version": VERSION, "model": saved,
             "frozen": {"digest": frozen_digest(frozen), "tensors": len(frozen),
                        "numel": sum(t.numel() for t in frozen.values()), "identity": identity}, **meta}
    try:
        save_torch(path, state)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as RuntimeError from its zip writer
        kept = "the last good checkpoint is kept there" if os.path.isfile(path) else "no checkpoint was kept"
        raise CheckpointError(f"cannot write checkpoint {path}: {_reason(err)}; {kept}. Free space or choose "
                              f"another --checkpoints folder, then rerun") from err


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err)
    return "no space left on device" if "No space" in text or "file write failed" in text else text.splitlines()[0]


def read_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """The checkpoint dict at `path`, or CheckpointError saying what is wrong with the file and what to do."""
    retrain = "retrain with --is_training 1 (same flags), or point --checkpoints to a good copy"
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path} is a directory, not a file; {retrain}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}; train first with --is_training 1 and the same "
                                f"flags (the setting name is built from them), or point --checkpoints to it")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes: a save was interrupted or the disk was "
                              f"full); {retrain}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.strerror or err}; check its permissions "
                              f"(e.g. chmod u+r) or {retrain}") from None
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err):  # not a torch file at all (legacy pickle of random bytes)
            raise CheckpointError(f"checkpoint {path} is damaged or not a torch file "
                                  f"({str(err).splitlines()[0][:80]}); {retrain}") from None
        # weights_only refused an object: never load it (its code would run); do not echo torch's advice
        found = str(err).split("Unsupported global:")[-1].split("was not")[0].strip() if "global" in str(err) \
            else "an object that is not a tensor"
        raise CheckpointError(f"checkpoint {path} is not a CrossAlign checkpoint: it holds {found}, which is "
                              f"never loaded (it could run code). Use a checkpoint written by run.py, or "
                              f"{retrain}") from None
    except Exception as err:  # noqa: BLE001 - a short file (EINVAL, EOFError), a bad zip, random bytes (KeyError)
        raise CheckpointError(f"checkpoint {path} is damaged or not a torch file (truncated copy? "
                              f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:80]}); {retrain}") from None
    if isinstance(state, dict) and "model" not in state and state and \
            all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} is a plain state_dict (torch.save(model.state_dict())); run.py "
                              f"reads {{'model': state_dict, ...}}: save it as torch.save({{'model': state_dict}}, "
                              f"path), or {retrain}")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} is not a run.py checkpoint (no 'model' state); {retrain}")
    return state


def _flag_diff(saved_args: dict | None, args: dict) -> str:
    """The channel count and the model-defining flags whose values differ between the checkpoint's run and this."""
    if not saved_args:
        return ""
    derived = {"enc_in", "c_out", "dec_in"}  # set from the data, not flags
    diff = [f"--{k} {saved_args[k]} (now {args.get(k)})" for k in sorted(saved_args)
            if k not in _RUN_ONLY | derived and k in args and saved_args[k] != args[k]
            and not (isinstance(args[k], float) and math.isnan(args[k]))]
    if saved_args.get("enc_in") not in (None, args.get("enc_in")):
        diff.insert(0, f"{saved_args['enc_in']} channels (now {args.get('enc_in')})")
    return f" It was trained with {', '.join(diff[:6])}." if diff else ""


def load_into(model: nn.Module, path: str, args: dict, identity: dict,
              device: torch.device | str = "cpu") -> dict:
    """Load the checkpoint at `path` into `model` (already built from its source); return its metadata.

    Version 2: the saved tensors must be exactly the model's trainable parameters and buffers, and the
    frozen parameters must hash to the saved digest. Version 1 (no "format"): the full state, strictly.
    """
    state = read_checkpoint(path, device)
    saved, frozen = split_state(model)
    current = {**saved, **frozen}
    tensors = state["model"]
    fix = "retrain with --is_training 1, or rerun with the flags it was trained with (its args.json)"
    mismatched = [f"{k} {list(v.shape)} there, {list(current[k].shape)} here" for k, v in tensors.items()
                  if k in current and isinstance(v, torch.Tensor) and v.shape != current[k].shape]
    if mismatched:
        raise CheckpointError(f"checkpoint {path} does not fit this model ({'; '.join(mismatched[:3])}): it was "
                              f"trained on other data or flags (e.g. another channel count or window)."
                              f"{_flag_diff(state.get('args'), args)} {fix[0].upper() + fix[1:]}")
    expected = set(saved) if state.get("format") == FORMAT else set(current)
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - set(current))
    if missing or unexpected:
        what = "; ".join(part for part in (f"missing {', '.join(missing[:4])}" if missing else "",
                                           f"unknown {', '.join(unexpected[:4])}" if unexpected else "") if part)
        raise CheckpointError(f"checkpoint {path} is for another model ({what}).{_flag_diff(state.get('args'), args)}"
                              f" Use the --model and flags it was trained with, or {fix.split(', or ')[0]}")
    if state.get("format") == FORMAT:
        rec = state.get("frozen") or {}
        digest = frozen_digest(frozen)
        if rec.get("digest") != digest:
            raise CheckpointError(
                f"checkpoint {path} was trained on a backbone whose frozen weights differ from the one built now "
                f"(saved {_identity(rec.get('identity'))}, digest {str(rec.get('digest'))[:12]}; now "
                f"{_identity(identity)}, digest {digest[:12]}): the weights behind --llm changed (another download, "
                f"package version, or a random init under another torch version). Use the backbone it was trained "
                f"with, or retrain with --is_training 1")
    model.load_state_dict(tensors, strict=state.get("format") != FORMAT)
    return {"path": path, "epoch": state.get("epoch"), "val_loss": state.get("val_loss"),
            "format_version": state.get("version", 1)}


def _identity(identity: dict | None) -> str:
    if not identity:
        return "no backbone record"
    return ", ".join(f"{k}={v}" for k, v in identity.items())


def check_writable(folder: str, flag: str) -> None:
    """A ValueError naming `flag` unless files can be written in `folder` (or, when it does not exist yet,
    in its nearest existing parent, where it would be created); nothing is left behind."""
    probe_dir = os.path.abspath(folder)
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    fix = f"choose a folder you can write to, e.g. {flag} ./{flag.lstrip('-')}"
    if not os.path.isdir(probe_dir):
        raise ValueError(f"{flag} {folder}: {probe_dir} is a file, not a folder; {fix}")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".tmp-probe-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as err:
        raise ValueError(f"{flag} {folder} is not writable ({err.strerror or err}); {fix}") from None


def check_free_space(folder: str, need: int, flag: str) -> None:
    """A ValueError naming `flag` when `folder`'s file system has less than `need` bytes free (plus 1 MiB)."""
    while not os.path.exists(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    free = shutil.disk_usage(folder).free
    if free < need + (1 << 20):
        raise ValueError(f"{flag} {folder}: {free / 2**20:.1f} MiB free, a checkpoint needs about "
                         f"{need / 2**20:.1f} MiB; free space or choose another {flag}")


__all__ = ["CheckpointError", "FORMAT", "VERSION", "check_free_space", "check_writable", "frozen_digest",
           "load_into", "read_checkpoint", "save_checkpoint", "split_state", "state_bytes"]

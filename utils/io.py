"""Atomic file output: write to a temporary file in the same folder, then rename.

A crash mid-write therefore never leaves a half-written result or checkpoint,
and the file gets the permissions a plain ``open(path, "w")`` would give it.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch


def _umask() -> int:
    """The process umask (read per call: it can change while the process runs)."""
    # umask can only be read by setting it; the probe value is the most private one, so a file
    # another thread creates in this instant is at worst too private, never too open
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (same directory, so the rename is atomic).

    The file ends with mode ``0o666 & ~umask``, as ``open()`` would create it
    (mkstemp alone would leave it private, 0600).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_json(path: str, obj: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default, allow_nan=True)
            f.write("\n")
    atomic_write(path, write)


def save_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, write)


def save_npy(path: str, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


def save_torch(path: str, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def append_summary(path: str, row: dict) -> None:
    """Append one row to a CSV, adding columns that earlier rows lacked (rewritten atomically)."""
    new = pd.DataFrame([row])
    if os.path.exists(path) and os.path.getsize(path) > 0:
        new = pd.concat([pd.read_csv(path), new], ignore_index=True)
    atomic_write(path, lambda tmp: new.to_csv(tmp, index=False))

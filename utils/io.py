"""Atomic file output: write to a temporary file in the same folder, then rename.

A crash mid-write therefore never leaves a half-written result or checkpoint,
and the file gets the permissions a plain ``open(path, "w")`` would give it.
A process killed mid-write leaves its temporary file behind; the temporary's
name carries the writer's host and process id, so the next write in that
folder removes it once that process is gone (`clean_stale_temporaries`).

`append_summary` adds one row to a results CSV under an exclusive lock
(`fcntl.flock` on `<csv>.lock`), so runs that finish together all land, and
it never re-parses earlier rows: an entity `0001` stays `0001`.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch

TMP_PREFIX = ".tmp-"
# a temporary not in our `.tmp-<host>-<pid>-` form (an older version's, another host's) is stale after this long
STALE_AFTER_SECONDS = 3600.0


def _umask() -> int:
    """The process umask (read per call: it can change while the process runs)."""
    # umask can only be read by setting it; the probe value is the most private one, so a file
    # another thread creates in this instant is at worst too private, never too open
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_temporaries(folder: str) -> list[str]:
    """Remove the `.tmp-*` files in `folder` that no live writer owns; return their names.

    Ours are named `.tmp-<host>-<pid>-<random>`: one of this host whose process is gone is removed at
    once (a live process's, ours included, is kept: it may be writing). Any other `.tmp-*` file (an
    older version's, another host's on a shared disk) is removed when older than STALE_AFTER_SECONDS.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host, now = _host(), time.time()
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        parts = entry.name[len(TMP_PREFIX):].split("-", 2)
        try:
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                stale = not _alive(int(parts[1]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_SECONDS
            if stale and entry.is_file(follow_symlinks=False):
                os.remove(entry.path)
                removed.append(entry.name)
        except OSError:  # vanished meanwhile (its writer renamed it) or not ours to remove
            continue
    return removed


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, then rename tmp_path to `path` (same directory, so the rename is atomic).

    The file ends with mode ``0o666 & ~umask``, as ``open()`` would create it
    (mkstemp alone would leave it private, 0600). Stale temporaries of killed writers in the same
    folder are removed first.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    clean_stale_temporaries(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}{_host()}-{os.getpid()}-",
                               suffix=os.path.splitext(path)[1])
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


@contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive `fcntl.flock` on `<path>.lock` (created when missing) for the `with` block.

    The lock is on a separate file, so it survives `path` being replaced by an atomic rename; the
    kernel releases it when the holder exits, even when killed.
    """
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o666)  # mode & ~umask, as open() gives
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _csv_cell(value: Any) -> str:
    """A summary cell as text: None and NaN empty (as pandas writes them), numbers in their shortest form."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _csv_line(cells: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


def append_summary(path: str, row: dict) -> None:
    """Append `row` to the CSV at `path` under an exclusive lock, so concurrent runs never lose a row.

    Earlier rows are never re-parsed as numbers: a new file is written with the row's columns; a row
    whose columns the header has is appended as one line; a row with new columns rewrites the file
    once (atomically, still under the lock) with those columns added at the end of the header and
    left empty in the earlier rows, whose cells are copied as text (`0001` stays `0001`).
    """
    cells = {str(k): _csv_cell(v) for k, v in row.items()}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with file_lock(path):
        try:
            with open(path, newline="") as f:
                rows = csv.reader(f)
                header = next(rows, None)
                added = [] if header is None else [c for c in cells if c not in header]
                old = list(rows) if added else None
        except FileNotFoundError:
            header, added, old = None, [], None
        if header is None:  # missing or empty
            text = _csv_line(list(cells)) + _csv_line(list(cells.values()))
            save_text(path, text)
        elif added:
            header = header + added
            text = _csv_line(header) + "".join(_csv_line(r + [""] * (len(header) - len(r))) for r in old)
            text += _csv_line([cells.get(c, "") for c in header])
            save_text(path, text)
        else:
            line = _csv_line([cells.get(c, "") for c in header])
            with open(path, "rb") as f:
                if f.seek(0, os.SEEK_END):
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        line = "\n" + line  # a file edited by hand without a final newline
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, line.encode())  # one write: a reader sees the whole row or none of it
            finally:
                os.close(fd)

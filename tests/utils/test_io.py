"""Atomic writes (utils/io.py): the file appears whole and with the permissions a plain open() gives it."""
from __future__ import annotations

import os
import stat

import pytest

from utils.io import atomic_write, save_text


@pytest.fixture
def restore_umask():
    """The test may change the umask; the caller's is restored afterwards."""
    before = os.umask(0o077)  # reading the umask means setting it
    os.umask(before)
    yield
    os.umask(before)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027])
@pytest.mark.usefixtures("restore_umask")
def test_atomic_write_gives_the_mode_plain_open_gives(tmp_path, mask):
    os.umask(mask)
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    save_text(str(tmp_path / "atomic.txt"), "x")
    assert _mode(tmp_path / "atomic.txt") == _mode(tmp_path / "plain.txt") == 0o666 & ~mask
    assert os.umask(mask) == mask  # atomic_write left the umask as it found it


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    save_text(str(target), "old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        atomic_write(str(target), broken)
    assert os.listdir(tmp_path) == ["out.txt"] and target.read_text() == "old"

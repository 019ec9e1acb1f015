"""utils/io.py: atomic writes (whole files, the permissions a plain open() gives, no temporaries left by
killed writers) and summary rows appended under a lock (none lost, none rewritten)."""
from __future__ import annotations

import csv
import multiprocessing
import os
import signal
import stat
import time

import pytest

from utils.io import STALE_AFTER_SECONDS, append_summary, atomic_write, clean_stale_temporaries, save_text


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


# ---- summary rows under concurrency (utils.io.append_summary)

def _append_after(barrier, path: str, i: int) -> None:
    barrier.wait()  # all writers start together
    append_summary(path, {"setting": f"run{i}", "entity": "0001" if i % 2 else "135", "seed": i, "f1": i / 10,
                          **({"late_column": "x"} if i == 5 else {})})


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_eight_concurrent_appends_all_land_with_their_text_intact(tmp_path):
    path = str(tmp_path / "summary.csv")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_append_after, args=(barrier, path, i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 8
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["setting"] for r in rows) == [f"run{i}" for i in range(8)]
    assert {r["entity"] for r in rows} == {"0001", "135"}  # never re-parsed as numbers (1.0, 135.0)
    assert [r["late_column"] for r in rows if r["setting"] == "run5"] == ["x"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_a_new_column_extends_the_header_and_leaves_earlier_cells_as_written(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("data,entity,f1\nUCR,135,0.5\nX,0001,\n")  # an older version's file
    append_summary(str(path), {"data": "UCR", "entity": "0042", "f1": float("nan"), "seq_len": 100})
    assert path.read_text() == "data,entity,f1,seq_len\nUCR,135,0.5,\nX,0001,,\nUCR,0042,,100\n"
    append_summary(str(path), {"entity": "7", "data": "Y"})  # known columns: appended in the header's order
    assert path.read_text().endswith("\nY,7,,\n")


# ---- temporaries of killed writers (utils.io.clean_stale_temporaries)

@pytest.mark.skipif(os.name != "posix", reason="fork and SIGKILL")
def test_a_writer_killed_mid_save_leaves_no_temporary_after_the_next_write(tmp_path):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child starts an atomic write and hangs inside it
        def hang(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write("half")
            os.write(write, b"x")
            time.sleep(60)
        try:
            atomic_write(str(tmp_path / "metrics.json"), hang)
        finally:
            os._exit(0)
    os.read(read, 1)
    left = [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    assert len(left) == 1  # a live writer's temporary is kept
    assert clean_stale_temporaries(str(tmp_path)) == []
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    save_text(str(tmp_path / "report.md"), "the next run")
    assert sorted(os.listdir(tmp_path)) == ["report.md"]


def test_foreign_temporaries_are_removed_only_when_old(tmp_path):
    young, old = tmp_path / ".tmp-abc123.json", tmp_path / ".tmp-otherhost-1-abc.pt"
    young.write_text("?")
    old.write_text("?")
    past = time.time() - 2 * STALE_AFTER_SECONDS
    os.utime(old, (past, past))
    assert clean_stale_temporaries(str(tmp_path)) == [old.name]
    assert young.exists()

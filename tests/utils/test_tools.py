"""The default thread count: the free cores, 1 when other work keeps them all busy."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from utils import tools
from utils.tools import busy_cores, default_threads


@pytest.mark.parametrize("cores,busy,threads", [(2, 0.1, 2), (2, 0.6, 1), (2, 1.4, 1), (2, 8.0, 1), (16, 3.6, 12),
                                                (16, 0.0, 16), (1, 0.0, 1), (4, 4.0, 1)])
def test_default_threads_leave_busy_cores_alone(cores, busy, threads):
    n, note = default_threads(cores=cores, busy=busy)
    assert n == threads
    assert f"threads: {threads}" in note and f"{busy:.1f} busy now" in note and "--threads N overrides" in note


def test_default_threads_reads_the_machine():
    n, _ = default_threads()
    assert n >= 1


def test_busy_cores_sees_a_spinning_process():
    """One process spinning on a core the sample covers counts as (about) one busy core."""
    cpu = min(os.sched_getaffinity(0))
    spin = subprocess.Popen([sys.executable, "-c", "import os,time\nos.sched_setaffinity(0,{%d})\n"
                             "t=time.time()\nwhile time.time()-t<5: pass" % cpu])
    try:
        time.sleep(0.3)
        busy = busy_cores({cpu}, interval=0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy > 0.8


def test_default_threads_fall_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(tools, "busy_cores", lambda cpus, interval=0.5: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    n, note = default_threads()
    assert n == 1 and "64.0 load average" in note

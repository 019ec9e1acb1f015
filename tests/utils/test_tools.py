"""The default thread count: the free cores, 1 when the load exceeds them."""
from __future__ import annotations

import pytest

from utils.tools import default_threads


@pytest.mark.parametrize("cores,load,threads", [(2, 0.1, 2), (2, 0.6, 1), (2, 1.4, 1), (2, 8.0, 1), (16, 3.6, 12),
                                                (16, 0.0, 16), (1, 0.0, 1), (4, 4.0, 1)])
def test_default_threads_leave_busy_cores_alone(cores, load, threads):
    n, note = default_threads(cores=cores, load=load)
    assert n == threads
    assert f"threads: {threads}" in note and f"load average {load:.1f}" in note and "--threads N overrides" in note


def test_default_threads_reads_the_machine():
    n, _ = default_threads()
    assert n >= 1

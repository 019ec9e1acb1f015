"""utils/allocator.py: with glibc, large tensors reuse heap memory (no page faults on the second one)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from utils.allocator import OPT_OUT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# a 64 MiB product made and freed 30 times; prints (applied, minor page faults over the last 5).
# The first few land above small allocations made in between and grow the heap; then freed blocks are reused.
_PROBE = """
import resource, torch
from utils.allocator import keep_large_blocks
applied = keep_large_blocks()
x = torch.randn(16 * 2 ** 20)
for i in range(30):
    if i == 25:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * x
    del y
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in (OPT_OUT, "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's; other C libraries are left as they are")
def test_large_blocks_are_reused_unless_opted_out():
    applied, faults = _probe()
    assert applied and faults < 1000  # 5 x 64 MiB is 81920 pages of 4 KiB: reused memory faults on none of them
    applied, faults = _probe(**{OPT_OUT: "1"})
    assert not applied and faults > 60000  # glibc's default: a fresh mmap each time, every page faulted in again
    applied, _ = _probe(MALLOC_MMAP_MAX_="65536")  # the user's own glibc tuning wins
    assert not applied

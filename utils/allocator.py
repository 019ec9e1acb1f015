"""Keep large freed blocks in the process heap (glibc), so big tensors do not pay page faults at every step.

glibc's ``malloc`` serves every request above its mmap threshold (which grows
to at most 32 MiB) with a fresh ``mmap`` and unmaps it on ``free``. A training
step allocates and frees activations of that size hundreds of times, so each
new tensor's pages are first touched through page faults the kernel must zero:
an fp32 multiply of two 9.8M-element tensors takes 29.6 ms that way and
11.6 ms from reused heap memory (1 thread; README, The model > Speed).
``keep_large_blocks`` turns mmap off for ``malloc`` (``mallopt(M_MMAP_MAX, 0)``)
and raises the trim threshold, the in-process equivalent of
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``. Freed blocks then stay in
the heap and are reused; the cost is that the resident size stays near its
peak instead of shrinking between steps.

It does nothing on other C libraries, or when ``CROSSALIGN_DEFAULT_MALLOC=1``
is set (the opt-out), or when the user already tuned glibc with those variables.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_large_blocks", "OPT_OUT"]

OPT_OUT = "CROSSALIGN_DEFAULT_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's <malloc.h> parameter numbers
_TRIM_THRESHOLD = 2 ** 31 - 1  # bytes of free memory at the heap's top before it is returned (mallopt takes an int)
_applied = False


def keep_large_blocks() -> bool:
    """Ask glibc to serve large allocations from the reusable heap; True when the setting is in effect.

    Idempotent. Returns False (and changes nothing) off glibc, under the opt-out
    ``CROSSALIGN_DEFAULT_MALLOC=1``, or when ``MALLOC_MMAP_MAX_`` /
    ``MALLOC_TRIM_THRESHOLD_`` are already set in the environment.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(OPT_OUT, "") not in ("", "0") \
            or "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: other C libraries number their parameters differently
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; the trim threshold first, so a failure leaves mmap as it was
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_MAX, 0))
    return _applied

"""Mamba's selective scan as a compiled CPU kernel: ``csrc/selective_scan.c``, built on first use.

The PyTorch scan (``layers.mamba._ScanCore``) runs the recurrence as about twenty elementwise passes
over ``[B, T, N, D]`` chunks per training step, each writing its result to memory for the next to read
back; the C kernel keeps those intermediates in registers and computes each decay ``exp(delta A)``
where it is used, so forward + backward take about a quarter of the time on one CPU core (README,
"Speed"). Same maths, same layout, same saved tensors (the states entering each segment of
``SEGMENT`` steps; the backward recomputes the rest).

Built with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``; ``-O3 -march=native``,
retried without ``-march=native``, then without OpenMP, if that fails) into a cache folder (``$CROSSALIGN_KERNEL_DIR``,
else ``$XDG_CACHE_HOME/crossalign/kernels``, else ``~/.cache/crossalign/kernels``), one file per
source, flags and CPU, written atomically so concurrent runs do not see a half-written library.
Loaded with ctypes (no Python or torch headers: the build takes well under a second). Without a
compiler, or if the build fails, ``unavailable_reason()`` says why and callers use the PyTorch scan.

Only float32 tensors on the CPU. The batch is split across ``torch.get_num_threads()`` OpenMP threads,
PyTorch's own (see ``_openmp_flags``): a separate pool of threads would compete with PyTorch's, which
spin for a while after each parallel operator (measured: with a thread pool of our own the kernel was
no faster on 2 threads than on 1). Without OpenMP it runs on one thread.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import torch

SOURCE = Path(__file__).with_name("csrc") / "selective_scan.c"
SEGMENT = 32  # time steps between the states kept for the backward (at most SEGMENT + 1 states rebuilt at once)
_FLAGS = (["-O3", "-march=native"], ["-O3"])  # the first that builds
_COMMON = ["-std=c11", "-ffp-contract=fast", "-shared", "-fPIC"]  # ISO C turns FMA contraction off
_BUILD_TIMEOUT_S = 120

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_error: str | None = None
_loaded = False


def kernel_dir() -> Path:
    """Where built kernels are cached."""
    if os.environ.get("CROSSALIGN_KERNEL_DIR"):
        return Path(os.environ["CROSSALIGN_KERNEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crossalign" / "kernels"


def find_compiler() -> str | None:
    """The C compiler to build with: ``$CC`` if set (None when it is not found), else the first of cc, gcc, clang."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)


def _cpu_identity() -> str:
    """What -march=native depends on: the machine and its CPU's feature flags."""
    ident = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            ident += [line for line in f if line.startswith(("flags", "Features", "model name"))][:3]
    except OSError:
        pass
    return "|".join(ident)


def _openmp_flags(compiler: str) -> list[str]:
    """``-fopenmp`` where the kernel's OpenMP threads are PyTorch's own: on Linux with GCC, whose libgomp.so.1
    the dynamic linker resolves to the copy PyTorch has loaded (torch/lib/libgomp.so.1). Elsewhere (clang's
    libomp, macOS) a second OpenMP runtime would compete with PyTorch's for the cores: no OpenMP, one thread."""
    torch_lib = Path(torch.__file__).parent / "lib"
    if not (platform.system() == "Linux" and any(torch_lib.glob("libgomp*.so*"))):
        return []
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["-fopenmp"] if "Free Software Foundation" in version else []


def _build(compiler: str) -> Path:
    """Compile SOURCE into the cache (or reuse the cached build); raise RuntimeError saying why it failed."""
    source = SOURCE.read_bytes()
    failures = []
    openmp = _openmp_flags(compiler)
    for flags in [f + openmp for f in _FLAGS] + ([list(f) for f in _FLAGS] if openmp else []):
        key = hashlib.sha256(b"\0".join([source, " ".join(flags + _COMMON).encode(), compiler.encode(),
                                         _cpu_identity().encode()])).hexdigest()[:16]
        folder = kernel_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home: build in a private temporary folder instead
            folder = Path(tempfile.mkdtemp(prefix="crossalign-kernels-"))
        target = folder / f"selective_scan-{key}.so"
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=target.stem, suffix=".so.tmp")
        os.close(fd)
        try:
            done = subprocess.run([compiler, *flags, *_COMMON, "-o", tmp, str(SOURCE)], capture_output=True,
                                  text=True, timeout=_BUILD_TIMEOUT_S)
            if done.returncode == 0:
                os.replace(tmp, target)  # atomic: a concurrent run sees no file or a whole one
                return target
            said = (done.stderr or done.stdout).strip().splitlines()
            failures.append(f"{' '.join(flags)}: {said[-1] if said else f'exit status {done.returncode}'}")
        except (OSError, subprocess.TimeoutExpired) as err:
            failures.append(f"{' '.join(flags)}: {type(err).__name__}: {err}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise RuntimeError(f"{compiler} could not build {SOURCE.name} ({'; '.join(failures)})")


def _load() -> ctypes.CDLL | None:
    global _lib, _error, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            compiler = find_compiler()
            if compiler is None:
                _error = (f"no C compiler found ($CC={os.environ['CC']!r} is not on PATH)" if os.environ.get("CC")
                          else "no C compiler (cc, gcc or clang) on PATH")
            else:
                try:
                    lib = ctypes.CDLL(str(_build(compiler)))
                    i64, ptr = ctypes.c_int64, ctypes.c_void_p
                    lib.scan_fwd.argtypes = [i64] * 5 + [ctypes.c_int] + [ptr] * 7
                    lib.scan_bwd.argtypes = [i64] * 5 + [ctypes.c_int] + [ptr] * 13
                    lib.scan_fwd.restype = lib.scan_bwd.restype = ctypes.c_int
                    _lib = lib
                except (RuntimeError, OSError, AttributeError) as err:
                    _error = str(err)
    return _lib


def unavailable_reason() -> str | None:
    """None when the kernel is built and loaded (building it on the first call), else why not."""
    _load()
    return _error


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads(batch: int) -> int:
    return max(1, min(torch.get_num_threads(), batch))


def _check(code: int) -> None:
    if code:
        raise MemoryError("the C selective scan could not allocate its working buffers")


class KernelScanCore(torch.autograd.Function):
    """``_ScanCore`` of layers/mamba.py computed by the C kernel: y_t = <h_t, C_t>,
    h_t = exp(delta_t A) h_{t-1} + delta_t u_t B_t. Inputs float32, contiguous, on the CPU:
    u, delta [B, L, D]; At = A^T [N, D]; B, C [B, L, N] -> y [B, L, D]."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, delta: torch.Tensor, At: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor) -> torch.Tensor:
        lib = _load()
        bsz, length, d = u.shape
        n = At.shape[0]
        At2 = At * math.log2(math.e)  # the kernel computes exp(x) as 2^(x log2 e)
        y = torch.empty_like(u)
        hs = u.new_empty(bsz, (length - 1) // SEGMENT, n, d) if any(ctx.needs_input_grad) else None
        _check(lib.scan_fwd(bsz, length, d, n, SEGMENT, _threads(bsz), *map(_ptr, (u, delta, At2, B, C, y, hs))))
        ctx.save_for_backward(u, delta, At, B, C, hs)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor):
        lib = _load()
        u, delta, At, B, C, hs = ctx.saved_tensors
        bsz, length, d = u.shape
        n = At.shape[0]
        gy, At2 = gy.contiguous(), At * math.log2(math.e)
        gu, gdelta, gB, gC = torch.empty_like(u), torch.empty_like(u), torch.empty_like(B), torch.empty_like(C)
        threads = _threads(bsz)
        gAt = torch.zeros(threads, n, d, dtype=At.dtype)  # a sum over the batch: one partial per thread
        _check(lib.scan_bwd(bsz, length, d, n, SEGMENT, threads,
                            *map(_ptr, (u, delta, At, At2, B, C, hs, gy, gu, gdelta, gAt, gB, gC))))
        return gu, gdelta, gAt.sum(0), gB, gC

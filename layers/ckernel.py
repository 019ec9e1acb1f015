"""Small C kernels for the CPU, built with the system compiler on first use, cached and loaded with ctypes.

``CKernel(source, declare)`` stands for one C file of ``layers/csrc``. Its first ``lib()`` call builds it
with the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``; ``-O3 -march=native``, retried
without ``-march=native``, then without OpenMP, if that fails) into a cache folder
(``$CROSSALIGN_KERNEL_DIR``, else ``$XDG_CACHE_HOME/crossalign/kernels``, else
``~/.cache/crossalign/kernels``), one file per source (with the shared headers of ``csrc``), flags and
CPU, written atomically so concurrent runs do not see a half-written library. Loaded with ctypes: the
sources are plain C11 with GNU vector extensions and no Python or torch headers, so a build takes well under
a second. Without a compiler, or if the build fails, ``lib()`` is None and ``unavailable_reason()`` says
why; callers then run their PyTorch path.

OpenMP: on Linux with GCC the kernels are built with ``-fopenmp``, and the dynamic linker resolves their
libgomp to the copy PyTorch has loaded, so their threads are PyTorch's own
(``torch.get_num_threads()``). A separate pool of threads would compete with PyTorch's, which spin for a
while after each parallel operator (measured for the scan: with a thread pool of its own the kernel was no
faster on 2 threads than on 1). Elsewhere (clang's libomp, macOS) they run on one thread.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

import torch

CSRC = Path(__file__).with_name("csrc")
_FLAGS = (["-O3", "-march=native"], ["-O3"])  # the first that builds
_COMMON = ["-std=c11", "-ffp-contract=fast", "-shared", "-fPIC"]  # ISO C turns FMA contraction off
_BUILD_TIMEOUT_S = 120


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
    """``-fopenmp`` where the kernel's OpenMP threads are PyTorch's own (see the module docstring), else none."""
    torch_lib = Path(torch.__file__).parent / "lib"
    if not (platform.system() == "Linux" and any(torch_lib.glob("libgomp*.so*"))):
        return []
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["-fopenmp"] if "Free Software Foundation" in version else []


def build(compiler: str, source: Path) -> Path:
    """Compile ``source`` into the cache (or reuse the cached build); raise RuntimeError saying why it failed."""
    # the source and the headers of its folder it may include: a change to either makes a new build
    text = b"\0".join([source.read_bytes(), *(h.read_bytes() for h in sorted(source.parent.glob("*.h")))])
    failures = []
    openmp = _openmp_flags(compiler)
    for flags in [f + openmp for f in _FLAGS] + ([list(f) for f in _FLAGS] if openmp else []):
        key = hashlib.sha256(b"\0".join([text, " ".join(flags + _COMMON).encode(), compiler.encode(),
                                         _cpu_identity().encode()])).hexdigest()[:16]
        folder = kernel_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home: build in a private temporary folder instead
            folder = Path(tempfile.mkdtemp(prefix="crossalign-kernels-"))
        target = folder / f"{source.stem}-{key}.so"
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=target.stem, suffix=".so.tmp")
        os.close(fd)
        try:
            done = subprocess.run([compiler, *flags, *_COMMON, "-o", tmp, str(source)], capture_output=True,
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
    raise RuntimeError(f"{compiler} could not build {source.name} ({'; '.join(failures)})")


class CKernel:
    """One C source of ``layers/csrc``, built and loaded on the first ``lib()`` call (once per process).

    ``declare(lib)`` sets the ctypes signatures of the functions callers use; an ``AttributeError`` there (a
    function missing from the library) counts as a failed build.
    """

    def __init__(self, source: Path, declare: Callable[[ctypes.CDLL], None]) -> None:
        self.source, self._declare = source, declare
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the loaded library and its check (tests: as in a new process, which finds the cached build)."""
        self._lib: ctypes.CDLL | None = None
        self._error: str | None = None
        self._loaded = False
        self._checked: list[str | None] = []  # [None] once the kernel passed its check, [why not] once it failed

    def lib(self) -> ctypes.CDLL | None:
        """The loaded library, building it first if needed; None when it cannot be built (``unavailable_reason``)."""
        with self._lock:
            if not self._loaded:
                self._loaded = True
                compiler = find_compiler()
                if compiler is None:
                    self._error = (f"no C compiler found ($CC={os.environ['CC']!r} is not on PATH)"
                                   if os.environ.get("CC") else "no C compiler (cc, gcc or clang) on PATH")
                else:
                    try:
                        lib = ctypes.CDLL(str(build(compiler, self.source)))
                        self._declare(lib)
                        self._lib = lib
                    except (RuntimeError, OSError, AttributeError) as err:
                        self._error = str(err)
        return self._lib

    def unavailable_reason(self) -> str | None:
        """None when the kernel is built and loaded (building it on the first call), else why not."""
        self.lib()
        return self._error

    def checked_error(self, check: Callable[[], str | None]) -> str | None:
        """None when the kernel is built and ``check()`` (its comparison with the PyTorch path it replaces:
        None when they agree, else why not) passed; else why not. Run once per process (until ``reset``), with
        autograd on even inside ``torch.inference_mode()``, where the first call may come from (scoring), and
        with CPU autocast off even inside ``--bf16 1``'s, where the first call comes from in bf16 training: the
        check compares float32 with float32, and the PyTorch path's matmuls in bf16 would fail it (5.7e-3 for the
        scan, 4.2e-3 for the attention) and turn the kernel off for the whole run."""
        if not self._checked:
            why = self.unavailable_reason()
            if why is None:
                with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False):
                    why = check()
            self._checked.append(why)
        return self._checked[0]


def threads_for(work_items: int) -> int:
    """OpenMP threads for a kernel call: PyTorch's thread count, at most one per independent work item."""
    return max(1, min(torch.get_num_threads(), work_items))


def raise_if_failed(code: int, kernel: str) -> None:
    """The kernels return 0, or 1 when a working buffer could not be allocated: raise on 1."""
    if code:
        raise MemoryError(f"the C {kernel} kernel could not allocate its working buffers")


def outputs_and_gradients(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor],
                          grad: torch.Tensor) -> list[torch.Tensor]:
    """``[fn(*inputs), d/d input_0, ...]`` for the output gradient ``grad``: what a kernel's first-call check
    compares with its PyTorch path. Each input becomes a fresh leaf with the input's own strides (a strided view,
    such as Mamba's half of its projection, stays strided: the layout the kernel is called with)."""
    leaves = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype).copy_(t).requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(grad)
    return [out.detach()] + [t.grad for t in leaves]


def largest_relative_difference(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """The largest over pairs of ``max |ours - reference| / max |reference|``: how far a kernel's outputs and
    gradients are from its PyTorch path's."""
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) for a, b in zip(ours, reference))

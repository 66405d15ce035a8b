"""Native CPU kernels (``custom_models/kernels/*.c``), compiled on first use.

A kernel is built with the machine's C compiler for the machine it runs on
(``-march=native``), once, into a cache folder keyed by the source, the flags and
the CPU's feature flags, so a shared home folder on a cluster of mixed CPUs stays
correct. The build writes to a temporary file and renames it, so parallel Ray workers
never load a half-written library. Where there is no compiler or the build fails,
:func:`kernel` returns None and callers keep their PyTorch path (same results, slower).

``RECBENCH_NATIVE=0`` turns the kernels off (A/B timing, debugging).
``RECBENCH_CACHE`` sets the cache folder (default ``$XDG_CACHE_HOME/recbench`` or
``~/.cache/recbench``).

Flags: ``-ffast-math`` at compile time only, which lets GCC call glibc's vectorised
``expf``; the link step leaves it out, so the library does not carry ``crtfastmath.o``,
which would switch the whole process to flush-to-zero arithmetic when loaded.
The kernels use OpenMP; the library resolves it to the ``libgomp.so.1`` that PyTorch
has already loaded, so both share one thread pool.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch  # noqa: F401  (loads PyTorch's OpenMP runtime before any kernel library)

KERNELS = Path(__file__).resolve().parent / "kernels"
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-std=c11"]
LINK_FLAGS = ["-shared", "-fopenmp"]


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _cache_dir() -> Path:
    if os.environ.get("RECBENCH_CACHE"):
        return Path(os.environ["RECBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recbench"


def _build(source: Path, compiler: str) -> Path:
    """The compiled library of ``source``, from the cache or built now."""
    key = hashlib.sha256("\n".join([source.read_text(), compiler, *COMPILE_FLAGS, *LINK_FLAGS,
                                    platform.machine(), _cpu_signature()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        obj, lib = Path(work) / f"{source.stem}.o", Path(work) / f"{source.stem}.so"
        subprocess.run([compiler, *COMPILE_FLAGS, "-c", str(source), "-o", str(obj)],
                       check=True, capture_output=True, text=True)
        subprocess.run([compiler, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"],
                       check=True, capture_output=True, text=True)
        os.replace(lib, target)
    return target


@functools.cache
def kernel(name: str) -> ctypes.CDLL | None:
    """The loaded library ``kernels/<name>.c``, or None (no compiler, a failed build, or ``RECBENCH_NATIVE=0``)."""
    if os.environ.get("RECBENCH_NATIVE", "1") == "0" or platform.system() != "Linux":
        return None
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    try:
        return ctypes.CDLL(str(_build(KERNELS / f"{name}.c", compiler)))
    except (OSError, subprocess.CalledProcessError):
        return None


def applies_to(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these tensors: float32 on CPU (other dtypes and devices keep PyTorch's path)."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    """A contiguous CPU tensor's data, for a kernel argument. The pointer keeps the tensor
    alive, so ``pointer(x.contiguous())`` stays valid while the kernel runs."""
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise ValueError("a native kernel takes contiguous CPU tensors")
    address = ctypes.c_void_p(tensor.data_ptr())
    address.tensor = tensor  # a temporary would otherwise be freed before the call
    return address


def threads() -> ctypes.c_int:
    """The kernels' OpenMP thread count: the threads PyTorch is set to use."""
    return ctypes.c_int(torch.get_num_threads())

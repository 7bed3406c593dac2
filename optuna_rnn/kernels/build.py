"""Build generated C with the system compiler, cache the library on disk, load it.

The cache key hashes the source, the flags and the machine, so a library is reused by
every process and every spelling of the same cell. A library is built in a private
temporary directory and moved into place with :func:`os.replace`, so processes racing
to build one cell never see a half-written file. Any failure returns ``None`` after one
warning; callers then run their pure-torch path.
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
import warnings
from pathlib import Path

import optuna

__all__ = ["atomic_write_text", "cache_dir", "load_library"]

_logger = optuna.logging.get_logger(__name__)

CACHE_ENV = "OPTUNA_RNN_KERNEL_CACHE"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
# First choice vectorises exp/tanh through glibc's libmvec; the second needs only libm.
VARIANTS = ((("-DORNN_MVEC",), ("-lmvec", "-lm")), ((), ("-lm",)))

_loaded: dict[str, ctypes.CDLL] = {}
_warned: set[str] = set()


def cache_dir() -> Path:
    """``$OPTUNA_RNN_KERNEL_CACHE``, else ``~/.cache/optuna_rnn/kernels``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optuna_rnn" / "kernels"


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``."""
    return os.environ.get("CC", "cc")


@functools.cache
def _machine() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}:{flags}"


@functools.cache
def _openmp() -> tuple[str, ...]:
    """``-fopenmp`` where torch itself runs on GNU OpenMP: the kernels then share torch's
    ``libgomp`` (already loaded, same soname) and its thread pool, not a second runtime."""
    import torch

    return ("-fopenmp",) if "parallel backend: OpenMP" in torch.__config__.parallel_info() else ()


def _variants() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Flag sets to try in order: with OpenMP (where torch uses it), then without."""
    omp = _openmp()
    return [(omp + defines, libs) for defines, libs in VARIANTS] + ([*VARIANTS] if omp else [])


def _key(source: str, cc: str) -> str:
    text = "\0".join([source, cc, " ".join(FLAGS), repr(_variants()), _machine()])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _warn_once(cc: str, message: str) -> None:
    """One warning per compiler and process: the fallback is slow, not wrong."""
    if cc not in _warned:
        _warned.add(cc)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        _logger.warning(message)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``target`` so that readers see the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".write-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def _build(source: str, target: Path, cc: str) -> str | None:
    """Compile ``source`` into ``target`` atomically; the compiler's complaint on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        src = Path(tmp) / "kernel.c"
        src.write_text(source)
        out = Path(tmp) / target.name
        error = ""
        for defines, libs in _variants():
            cmd = [cc, *FLAGS, *defines, str(src), "-o", str(out), *libs]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"{cc}: {err}"
            if proc.returncode == 0:
                os.replace(out, target)
                return None
            error = proc.stderr.strip()[-2000:]
        return error


def load_library(source: str) -> ctypes.CDLL | None:
    """The compiled ``source``, from this process, the disk cache or a fresh build.

    Returns ``None`` (after one warning per process) when there is no working compiler.
    """
    cc = compiler()
    key = _key(source, cc)
    if key in _loaded:
        return _loaded[key]
    target = cache_dir() / f"cell_{key}.so"
    if not target.exists():
        if shutil.which(cc) is None:
            _warn_once(cc, f"no C compiler ({cc!r} not found): fused kernels run as plain torch ops, "
                       "which is much slower; install gcc or set $CC")
            return None
        error = _build(source, target, cc)
        if error is not None:
            _warn_once(cc, f"building a fused kernel failed, falling back to plain torch ops: {error}")
            return None
        _logger.debug(f"built {target}")
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        _warn_once(cc, f"loading the fused kernel {target} failed, falling back to plain torch ops: {err}")
        return None
    _loaded[key] = lib
    return lib

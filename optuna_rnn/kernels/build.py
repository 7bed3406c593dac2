"""Build generated C with the system compiler, cache the library on disk, load it.

The cache key hashes the source, the flags and the machine, so a library is reused by
every process and every spelling of the same cell. A library is built in a private
temporary directory and moved into place with :func:`os.replace`, so processes racing
to build one cell never see a half-written file.

Beside each library lies a tag (``cell_KEY.so.tag``): the build tag, the key, the
library's size and its hash. A library is loaded only when its tag matches it, so a
truncated file, another cell's library or one stripped of its symbols is never handed to
``dlopen`` (which would kill the process with SIGBUS or SIGSEGV): it is built again, in
place and atomically. Builds run in the temporary directory on a relative file name, so
two builds of one source give the same bytes and racing writers agree.

A cache directory that cannot be created or written (a file in its place, a read-only
file system) gives one warning, and the process builds into a private temporary
directory instead (removed at exit). Any other failure returns ``None`` after one
warning; callers then run their pure-torch path.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import optuna

__all__ = ["atomic_write_text", "cache_dir", "compiler_command", "load_library"]

_logger = optuna.logging.get_logger(__name__)

CACHE_ENV = "OPTUNA_RNN_KERNEL_CACHE"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC")
# First choice vectorises exp/tanh through glibc's libmvec; the second needs only libm.
VARIANTS = ((("-DORNN_MVEC",), ("-lmvec", "-lm")), ((), ("-lm",)))

# Written into every tag: a library built by another layout of the cache is rebuilt.
BUILD_TAG = "optuna-rnn-kernel/1"

_loaded: dict[str, ctypes.CDLL] = {}
_warned: set[str] = set()
_private: list[Path] = []  # the private directory, once the cache proved unusable


def cache_dir() -> Path:
    """``$OPTUNA_RNN_KERNEL_CACHE``, else ``~/.cache/optuna_rnn/kernels``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optuna_rnn" / "kernels"


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``."""
    return os.environ.get("CC", "cc")


def compiler_command(cc: str) -> list[str]:
    """``cc`` split into words as make and setuptools split ``$CC`` (``"ccache gcc"``,
    ``"gcc -O0"``); an empty list where it names nothing or does not split."""
    try:
        return shlex.split(cc)
    except ValueError:
        return []


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


def _warn_once(what: str, message: str) -> None:
    """One warning per ``what`` (a compiler, a cache directory) and process: the
    fallbacks are slow, not wrong."""
    if what not in _warned:
        _warned.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        _logger.warning(message)


def atomic_write_text(target: Path, text: str) -> None:
    """Write ``target`` so that readers see the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".write-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _tag_of(library: Path) -> Path:
    return library.with_name(library.name + ".tag")


def _tag(key: str, library: Path) -> str:
    """What the tag of a good ``library`` for ``key`` says."""
    return json.dumps(
        {
            "build": BUILD_TAG,
            "key": key,
            "size": library.stat().st_size,
            "blake2b": _digest(library),
        },
        sort_keys=True,
    )


def _verified(key: str, library: Path) -> bool:
    """Whether ``library`` is the one built for ``key``: its tag names the build, the key,
    its size and its hash. Checked before ``dlopen``, which trusts any file."""
    try:
        tag = json.loads(_tag_of(library).read_text())
        return (
            isinstance(tag, dict)
            and tag.get("build") == BUILD_TAG
            and tag.get("key") == key
            and tag.get("size") == library.stat().st_size
            and tag.get("blake2b") == _digest(library)
        )
    except (OSError, ValueError):
        return False


def _build(source: str, key: str, target: Path, command: list[str]) -> str | None:
    """Compile ``source`` into ``target`` and its tag, atomically; the compiler's complaint
    on failure. Raises OSError where ``target``'s directory cannot be written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        Path(tmp, "kernel.c").write_text(source)
        error = ""
        for defines, libs in _variants():
            # Relative names, run in ``tmp``: no temporary path ends up in the library.
            cmd = [*command, *FLAGS, *defines, "kernel.c", "-o", target.name, *libs]
            try:
                proc = subprocess.run(
                    cmd, cwd=tmp, capture_output=True, text=True, timeout=120, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                return f"{command[0]}: {err}"
            if proc.returncode == 0:
                built = Path(tmp, target.name)
                tag = _tag_of(built)
                tag.write_text(_tag(key, built))
                os.replace(built, target)
                os.replace(tag, _tag_of(target))
                return None
            error = proc.stderr.strip()[-2000:]
        return error


def _private_dir() -> Path:
    """This process's own build directory (made on first use, removed at exit)."""
    if not _private:
        _private.append(Path(tempfile.mkdtemp(prefix="optuna-rnn-kernels-")))
        atexit.register(shutil.rmtree, _private[0], ignore_errors=True)
    return _private[0]


def load_library(source: str) -> ctypes.CDLL | None:
    """The compiled ``source``, from this process, the disk cache or a fresh build.

    Returns ``None`` (after one warning per process) when there is no working compiler.
    """
    cc = compiler()
    key = _key(source, cc)
    if key in _loaded:
        return _loaded[key]
    name = f"cell_{key}.so"
    target = (_private[0] if _private else cache_dir()) / name
    if not _verified(key, target):
        command = compiler_command(cc)
        if not command or shutil.which(command[0]) is None:
            missing = repr(command[0]) if command else "no program named"
            _warn_once(
                cc,
                f"no C compiler ($CC={cc!r}: {missing} not found): fused kernels run as plain "
                "torch ops, which is much slower; install gcc or set $CC",
            )
            return None
        if os.path.exists(target):
            _logger.info(f"the cached kernel {target} does not match its tag; building it again")
        try:
            error = _build(source, key, target, command)
        except OSError as err:  # the cache directory cannot be used: build privately
            try:
                private = _private_dir()
                _warn_once(
                    f"cache:{target.parent}",
                    f"the kernel cache {target.parent} cannot be used "
                    f"({err}); building kernels in {private} for this process only; set "
                    f"${CACHE_ENV} to a writable directory to keep them",
                )
                target = private / name
                error = _build(source, key, target, command)
            except OSError as err2:
                error = f"no directory to build in: {err}; {err2}"
        if error is not None:
            _warn_once(
                cc, f"building a fused kernel failed, falling back to plain torch ops: {error}"
            )
            return None
        _logger.debug(f"built {target}")
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        _warn_once(
            cc, f"loading the fused kernel {target} failed, falling back to plain torch ops: {err}"
        )
        return None
    _loaded[key] = lib
    return lib

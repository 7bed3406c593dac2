"""The on-disk kernel cache survives faults: a damaged library is built again before
anything loads it, an unusable cache directory falls back to a private one, and ``$CC``
may carry arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from optuna_rnn import zoo
from optuna_rnn.kernels import build
from optuna_rnn.kernels.fused import FusedCell

pytestmark = pytest.mark.skipif(
    shutil.which(build.compiler_command(build.compiler())[0]) is None, reason="needs a C compiler"
)

BUILD = (
    "from optuna_rnn import zoo; from optuna_rnn.kernels.fused import FusedCell\n"
    "assert FusedCell(zoo.get({name!r})).library('f32') is not None"
)
# The reproducer, checked against the reference backend.
TRAIN = textwrap.dedent(
    """
    import warnings, torch, optuna_rnn as o
    warnings.simplefilter("error", RuntimeWarning)  # a fallback warns: fail on it
    torch.manual_seed(0)
    cell = o.zoo.get("tanh")
    fused = o.CellRNN(cell, 3, 16, backend="fused")
    ref = o.CellRNN(cell, 3, 16, backend="reference")
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(7, 4, 3)
    for m in (fused, ref):
        m(x)[0].square().sum().backward()
    for a, b in zip(fused.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    print("ok")
    """
)


def _python(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPTUNA_RNN_KERNEL_CACHE=str(cache))
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _built(name: str, cache: Path) -> Path:
    """Build zoo cell ``name``'s kernel into ``cache`` in a fresh process; its library."""
    before = set(cache.glob("cell_*.so"))
    proc = _python(BUILD.format(name=name), cache)
    assert proc.returncode == 0, proc.stderr
    (lib,) = set(cache.glob("cell_*.so")) - before
    return lib


def _truncate(lib: Path, other: Path, tmp: Path) -> None:
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])  # was SIGBUS


def _swap(lib: Path, other: Path, tmp: Path) -> None:
    shutil.copyfile(other, lib)  # another cell's library: was SIGSEGV


def _strip(lib: Path, other: Path, tmp: Path) -> None:
    # A library without the cell's symbols: was AttributeError, with no fallback.
    (tmp / "empty.c").write_text("int nothing_here(void) { return 0; }\n")
    command = build.compiler_command(build.compiler())
    subprocess.run([*command, "-shared", "-fPIC", str(tmp / "empty.c"), "-o", str(lib)], check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A cache holding the tanh and gru kernels: the directory and both libraries."""
    cache = tmp_path_factory.mktemp("built")
    return cache, _built("tanh", cache), _built("gru", cache)


@pytest.fixture
def cache(built, tmp_path) -> tuple[Path, Path, Path]:
    """A copy of :func:`built`'s cache for one test to damage."""
    copy = tmp_path / "cache"
    shutil.copytree(built[0], copy)
    return copy, copy / built[1].name, copy / built[2].name


@pytest.mark.parametrize("damage", [_truncate, _swap, _strip], ids=["truncate", "swap", "strip"])
def test_a_damaged_cached_library_is_built_again_before_training_loads_it(damage, cache, tmp_path):
    cache, lib, other = cache
    good = lib.read_bytes()
    damage(lib, other, tmp_path)
    assert lib.read_bytes() != good
    proc = _python(TRAIN, cache)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert lib.read_bytes() == good  # rebuilt in place (builds are reproducible)
    assert not list(cache.glob(".build-*"))


def test_a_library_without_its_tag_is_built_again(cache):
    cache, lib, _ = cache
    tag = lib.with_name(lib.name + ".tag")
    tag.unlink()
    proc = _python(TRAIN, cache)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert tag.is_file()


@pytest.fixture
def fresh(monkeypatch):
    """A process state with nothing loaded, warned or privately built yet."""
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_warned", set())
    monkeypatch.setattr(build, "_private", [])


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_an_unusable_cache_directory_builds_privately_with_one_warning(
    where, tmp_path, monkeypatch, fresh
):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    cache = blocker if where == "a file" else blocker / "kernels"
    monkeypatch.setenv(build.CACHE_ENV, str(cache))
    with pytest.warns(RuntimeWarning, match="cannot be used") as record:
        libs = [FusedCell(zoo.get(name)).library("f32") for name in ("tanh", "gru")]
    assert all(lib is not None for lib in libs)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    (private,) = build._private
    assert len(list(private.glob("cell_*.so"))) == 2 and blocker.is_file()


@pytest.mark.parametrize("extra", ["-O0", "-g"])
def test_a_compiler_with_arguments_is_split_like_make_does(extra, tmp_path, monkeypatch, fresh):
    assert build.compiler_command("ccache gcc -O0") == ["ccache", "gcc", "-O0"]
    assert build.compiler_command("'my cc' -O0") == ["my cc", "-O0"]
    assert build.compiler_command("'unclosed") == []
    cc = shutil.which(build.compiler_command(build.compiler())[0])
    monkeypatch.setenv("CC", f"{cc} {extra}")
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert FusedCell(zoo.get("tanh")).library("f32") is not None


def test_a_compiler_that_is_not_there_is_named_in_the_warning(tmp_path, monkeypatch, fresh):
    monkeypatch.setenv("CC", "/nonexistent/ccache gcc")
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    with pytest.warns(RuntimeWarning, match="'/nonexistent/ccache' not found"):
        assert FusedCell(zoo.get("tanh")).library("f32") is None

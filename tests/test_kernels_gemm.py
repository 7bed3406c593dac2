"""The C time loop's matrix product against torch's, on every row tiling and panel tail."""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.kernels import gemm
from optuna_rnn.kernels.build import compiler

pytestmark = pytest.mark.skipif(shutil.which(compiler()) is None, reason="no C compiler")

_ARGS = [ctypes.c_long] * 3 + [
    ctypes.c_void_p,
    ctypes.c_long,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_long,
    ctypes.c_long,
]
_DTYPES = {"f32": (torch.float32, 1e-5), "f64": (torch.float64, 1e-13)}


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory):
    """A private kernel cache, so the build itself is part of what is tested."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTUNA_RNN_KERNEL_CACHE", str(tmp_path_factory.mktemp("gemm-cache")))
        yield


def _product(dtype: str) -> ctypes._CFuncPtr:
    return ctypes.CFUNCTYPE(None, *_ARGS)(gemm.address(dtype))


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["f32", "f64"]),
    m=st.integers(0, 30),
    n=st.integers(0, 80),
    k=st.integers(0, 40),
    pad=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    beta=st.booleans(),
    transposed=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_torch_on_strided_rows(dtype, m, n, k, pad, beta, transposed, seed):
    torch_dtype, tol = _DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k + pad[0], dtype=torch_dtype, generator=g)
    b = (
        torch.randn(n, k, dtype=torch_dtype, generator=g).t()
        if transposed
        else torch.randn(k, n, dtype=torch_dtype, generator=g)
    )
    c = torch.randn(m, n + pad[1], dtype=torch_dtype, generator=g)
    want = a[:, :k] @ b + (c[:, :n] if beta else 0)
    untouched = c[:, n:].clone()
    panels = gemm.pack(b)
    _product(dtype)(
        m, n, k, a.data_ptr(), a.stride(0), panels.data_ptr(), c.data_ptr(), c.stride(0), int(beta)
    )
    torch.testing.assert_close(c[:, :n], want, rtol=tol, atol=tol * max(k, 1))
    assert torch.equal(c[:, n:], untouched)  # columns past n (the next block) are left alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pack_lays_out_zero_padded_column_panels(dtype):
    b = torch.arange(3 * 37, dtype=dtype).view(3, 37)
    panels = gemm.pack(b)
    nr = gemm.panel_width(dtype)
    assert panels.shape == (-(-37 // nr), 3, nr) and panels.is_contiguous()
    for j in range(37):
        assert torch.equal(panels[j // nr, :, j % nr], b[:, j])
    assert not panels[-1, :, 37 % nr :].any()


@pytest.mark.parametrize(
    "m, n, k", [(10, 800, 200), (10, 200, 800), (16, 512, 128), (32, 128, 512)]
)
def test_matches_torch_at_the_time_loops_shapes(m, n, k):
    g = torch.Generator().manual_seed(m * n + k)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    c = torch.randn(m, n, generator=g)
    want = a @ b + c
    panels = gemm.pack(b)  # held: a temporary's memory would be freed before the call
    _product("f32")(m, n, k, a.data_ptr(), k, panels.data_ptr(), c.data_ptr(), n, 1)
    torch.testing.assert_close(c, want, rtol=1e-5, atol=1e-4)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return set()


# Other x86 targets than this machine's: (compiler flags, CPU flags they need, NR for f32).
_TARGETS = {
    "avx2": (["-march=haswell"], {"avx2", "fma"}, 16),
    "sse2": (["-march=x86-64"], set(), 8),
}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 targets")
@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_other_x86_targets_build_without_piecewise_vectors_and_match_torch(target, dtype, tmp_path):
    """A vector wider than the target's registers is expanded piecewise through memory
    (64-byte vectors ran at 1 GFLOP/s on AVX2): the build refuses that, and the library
    built for the target packs and multiplies correctly where this CPU can run it."""
    flags, needs, nr32 = _TARGETS[target]
    src, lib_path = tmp_path / "gemm.c", tmp_path / "gemm.so"
    src.write_text(gemm.source(dtype))
    cmd = [
        compiler(),
        "-O3",
        *flags,
        "-Werror=vector-operation-performance",
        "-shared",
        "-fPIC",
        str(src),
        "-o",
        str(lib_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    if not needs <= _cpu_flags():
        pytest.skip(f"this CPU lacks {sorted(needs - _cpu_flags())}")
    lib = ctypes.CDLL(str(lib_path))
    panel = getattr(lib, f"ornn_panel_{dtype}")
    panel.restype = ctypes.c_long
    torch_dtype, tol = _DTYPES[dtype]
    nr = panel()
    assert nr == (nr32 if dtype == "f32" else nr32 // 2)
    pack = getattr(lib, f"ornn_pack_{dtype}")
    pack.argtypes = (
        [ctypes.c_long] * 2 + [ctypes.c_void_p] + [ctypes.c_long] * 2 + [ctypes.c_void_p]
    )
    product = ctypes.CFUNCTYPE(None, *_ARGS)(
        ctypes.cast(getattr(lib, f"ornn_gemm_{dtype}"), ctypes.c_void_p).value
    )
    g = torch.Generator().manual_seed(7)
    for m, n, k in [(10, 200, 64), (16, 37, 50), (1, 8, 3), (7, nr + 1, 9)]:
        a, b = (
            torch.randn(m, k, dtype=torch_dtype, generator=g),
            torch.randn(n, k, dtype=torch_dtype, generator=g).t(),
        )
        c = torch.randn(m, n, dtype=torch_dtype, generator=g)
        want = a @ b + c
        panels = torch.empty(-(-n // nr), k, nr, dtype=torch_dtype)
        pack(k, n, b.data_ptr(), b.stride(0), b.stride(1), panels.data_ptr())
        product(m, n, k, a.data_ptr(), k, panels.data_ptr(), c.data_ptr(), n, 1)
        torch.testing.assert_close(c, want, rtol=tol, atol=tol * k)

"""Torch's own BLAS for the generated C: the addresses of its ``sgemm_``/``dgemm_``.

PyTorch's Linux CPU wheels link MKL into ``libtorch_cpu`` and export its Fortran GEMM
entry points. Calling them from the generated sequence runner keeps a whole time loop in
C, on the same BLAS and thread pool that ``torch.mm`` uses. Where a build exports no such
symbol the lookup returns ``None`` and the fused backend keeps its per-step loop in
Python. ``OPTUNA_RNN_BLAS=0`` turns the runner off.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

__all__ = ["gemm_address"]

_SYMBOLS = {"f32": "sgemm_", "f64": "dgemm_"}


@functools.cache
def _libraries() -> tuple[ctypes.CDLL, ...]:
    import torch

    found = []
    for path in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            found.append(ctypes.CDLL(str(path)))
        except OSError:
            continue
    return tuple(found)


def gemm_address(dtype: str) -> int | None:
    """Address of torch's Fortran GEMM for ``dtype`` ("f32" or "f64"), or ``None``."""
    if os.environ.get("OPTUNA_RNN_BLAS", "1") == "0":
        return None
    return _address(_SYMBOLS[dtype])


@functools.cache
def _address(symbol: str) -> int | None:
    for lib in _libraries():
        fn = getattr(lib, symbol, None)
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value
    return None

"""The matrix product inside the C time loop: a few batch rows times a weight packed once.

Each step of a fused time loop multiplies a block of batch rows (one OpenMP thread's
share: 10 rows at B=20 on two threads) by the same weight, 35-100 times per call. A
general BLAS GEMM re-reads the weight in its row-major layout and is tuned for large
products (MKL reaches 50-75 GFLOP/s per core at 10 rows here). This one takes the weight
packed once per call into column panels two vectors wide and contiguous along ``k``, and
keeps a whole tile of rows by one panel in vector registers, so every FMA reads its
weight vector with one contiguous load and each row's input with one broadcast.

Vectors are the target's own width (64 bytes with AVX-512, 32 with AVX, 16 elsewhere):
GCC expands a vector wider than the target's piecewise through the stack, which made
64-byte vectors run at 1 GFLOP/s on AVX2. Tiles hold as many rows as the registers allow.
The compiled library reports its panel width (:func:`panel_width`).

``ornn_gemm_{d}(m, n, k, a, lda, panels, c, ldc, beta)``: row-major ``C (m x n) = A (m x k)
B (k x n) (+ C where beta)``, ``B`` given as :func:`pack` lays it out. The source is fixed
text (no cell reaches it); it is built once per machine and dtype through the kernel cache.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from optuna_rnn.kernels.build import load_library

__all__ = ["C_DTYPES", "address", "pack", "packed_shape", "panel_width", "source"]

# Row tiles of up to this many rows are generated: with 32 vector registers (AVX-512,
# AArch64), 12 rows of two accumulators plus the panel's two vectors fit. Targets with 16
# registers use at most 6 (``ORNN_TILE``).
MAX_TILE = 12

_TYPES = {"f32": "float", "f64": "double"}

_PRELUDE = """\
/* optuna_rnn.kernels.gemm: packed-panel GEMM for the fused time loop. Do not edit. */
#if defined(__AVX512F__)
#define ORNN_VBYTES 64
#define ORNN_TILE {max_tile}
#elif defined(__AVX__)
#define ORNN_VBYTES 32
#define ORNN_TILE 6
#elif defined(__aarch64__)
#define ORNN_VBYTES 16
#define ORNN_TILE {max_tile}
#else
#define ORNN_VBYTES 16
#define ORNN_TILE 6
#endif
typedef {real} ornn_vec_{d} __attribute__((vector_size(ORNN_VBYTES), aligned(sizeof({real}))));
#define ORNN_LANES_{d} (ORNN_VBYTES / (long)sizeof({real}))
#define ORNN_NR_{d} (2 * ORNN_LANES_{d})
/* Panel rows fetched ahead: a loop's weights outgrow L1, so each step streams them from L2. */
#define ORNN_AHEAD 8
#define ORNN_TILE_{d} ORNN_TILE

long ornn_panel_{d}(void) {{ return ORNN_NR_{d}; }}
"""

# One tile: R rows by one panel, NV (1 or 2) vectors of it; ``nc`` valid columns.
_TILE = """\
static void ornn_tile_{d}_{r}_{nv}(long k, const {real} *restrict a, long lda,
    const {real} *restrict p, {real} *restrict c, long ldc, long beta, long nc) {{
  ornn_vec_{d} acc[{r}][{nv}];
  for (int i = 0; i < {r}; ++i)
    for (int v = 0; v < {nv}; ++v) acc[i][v] = (ornn_vec_{d}){{0}};
  for (long q = 0; q < k; ++q) {{
    ornn_vec_{d} w[{nv}];
    for (int v = 0; v < {nv}; ++v) __builtin_prefetch(p + (q + ORNN_AHEAD) * ORNN_NR_{d} + v * ORNN_LANES_{d});
    for (int v = 0; v < {nv}; ++v) w[v] = *(const ornn_vec_{d} *)(p + q * ORNN_NR_{d} + v * ORNN_LANES_{d});
    for (int i = 0; i < {r}; ++i) {{
      {real} x = a[i * lda + q];
      for (int v = 0; v < {nv}; ++v) acc[i][v] += x * w[v];
    }}
  }}
  for (int i = 0; i < {r}; ++i) {{
    {real} *row = c + i * ldc;
    if (nc == {nv} * ORNN_LANES_{d}) {{
      for (int v = 0; v < {nv}; ++v) {{
        ornn_vec_{d} *out = (ornn_vec_{d} *)(row + v * ORNN_LANES_{d});
        *out = beta ? *out + acc[i][v] : acc[i][v];
      }}
    }} else {{
      {real} tmp[{nv} * ORNN_LANES_{d}];
      __builtin_memcpy(tmp, acc[i], sizeof tmp);
      for (long j = 0; j < nc; ++j) row[j] = beta ? row[j] + tmp[j] : tmp[j];
    }}
  }}
}}
"""

_DRIVER = """\
typedef void (*ornn_tile_fn_{d})(long, const {real} *, long, const {real} *, {real} *, long, long, long);
static const ornn_tile_fn_{d} ornn_tiles_{d}[2][{max_tile} + 1] = {{{{0, {half}}}, {{0, {full}}}}};

void ornn_gemm_{d}(long m, long n, long k, const {real} *a, long lda, const {real} *panels,
                   {real} *c, long ldc, long beta) {{
  long tiles = (m + ORNN_TILE_{d} - 1) / ORNN_TILE_{d};
  for (long j = 0; j < n; j += ORNN_NR_{d}) {{
    long nc = n - j < ORNN_NR_{d} ? n - j : ORNN_NR_{d};
    const ornn_tile_fn_{d} *fns = ornn_tiles_{d}[nc > ORNN_LANES_{d}];
    const {real} *p = panels + j * k;
    for (long t = 0, r = 0; t < tiles; ++t) {{
      long rows = (m - r) / (tiles - t);  /* even tiles: 16 rows are 8 + 8, not 12 + 4 */
      fns[rows](k, a + r * lda, lda, p, c + r * ldc + j, ldc, beta, nc);
      r += rows;
    }}
  }}
}}

/* b (k x n, row stride rs, column stride cs) into panels, zero past n. */
void ornn_pack_{d}(long k, long n, const {real} *b, long rs, long cs, {real} *out) {{
  for (long j = 0; j < n; j += ORNN_NR_{d}) {{
    long nc = n - j < ORNN_NR_{d} ? n - j : ORNN_NR_{d};
    for (long q = 0; q < k; ++q) {{
      const {real} *src = b + q * rs + j * cs;
      {real} *dst = out + j * k + q * ORNN_NR_{d};
      for (long c = 0; c < nc; ++c) dst[c] = src[c * cs];
      for (long c = nc; c < ORNN_NR_{d}; ++c) dst[c] = 0;
    }}
  }}
}}
"""


def source(dtype: str) -> str:
    """The C translation unit of ``ornn_gemm_{dtype}`` ("f32" or "f64")."""
    fmt = {"d": dtype, "real": _TYPES[dtype], "max_tile": MAX_TILE}
    tiles = [_TILE.format(r=r, nv=nv, **fmt) for nv in (1, 2) for r in range(1, MAX_TILE + 1)]
    names = {
        nv: ", ".join(f"ornn_tile_{dtype}_{r}_{nv}" for r in range(1, MAX_TILE + 1))
        for nv in (1, 2)
    }
    driver = _DRIVER.format(half=names[1], full=names[2], **fmt)
    return "\n".join([_PRELUDE.format(**fmt), *tiles, driver])


#: The name of the C code built for each dtype (every compiled kernel uses these).
C_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


@functools.cache
def _library(dtype: str) -> ctypes.CDLL | None:
    lib = load_library(source(dtype))
    if lib is not None:
        fn = getattr(lib, f"ornn_pack_{dtype}")
        fn.argtypes = (
            [ctypes.c_long] * 2 + [ctypes.c_void_p] + [ctypes.c_long] * 2 + [ctypes.c_void_p]
        )
        fn.restype = None
    return lib


@functools.cache
def address(dtype: str, function: str = "gemm") -> int | None:
    """Address of ``ornn_gemm_{dtype}`` (or ``ornn_pack_{dtype}`` for ``function="pack"``),
    built on first use; ``None`` without a compiler."""
    lib = _library(dtype)
    return (
        None
        if lib is None
        else ctypes.cast(getattr(lib, f"ornn_{function}_{dtype}"), ctypes.c_void_p).value
    )


@functools.cache
def panel_width(dtype: torch.dtype) -> int:
    """Columns per panel (NR) of the library built for ``dtype`` on this machine: two of
    its vectors. Needs the library (:func:`address`)."""
    key = C_DTYPES[dtype]
    fn = getattr(_library(key), f"ornn_panel_{key}")
    fn.restype = ctypes.c_long
    return fn()


def packed_shape(b: torch.Tensor) -> tuple[int, int, int]:
    """Shape of :func:`pack`'s result for ``b`` (k x n): ``(ceil(n / NR), k, NR)``."""
    k, n = b.shape
    nr = panel_width(b.dtype)
    return (-(-n // nr), k, nr)


def pack(b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``b`` (k x n, any strides, float32 or float64 on the CPU) as ``ornn_gemm``'s panels,
    panel ``j`` holding columns ``j * NR`` onwards, zero past ``n``; written into ``out``
    (contiguous, :func:`packed_shape`) where given. Needs the library (:func:`address`)."""
    dtype = C_DTYPES[b.dtype]
    shape = packed_shape(b)
    if out is None:
        out = b.new_empty(shape)
    elif out.shape != shape or out.dtype != b.dtype or not out.is_contiguous():
        raise ValueError(f"pack: out must be a contiguous {b.dtype} tensor of shape {shape}")
    k, n = b.shape
    getattr(_library(dtype), f"ornn_pack_{dtype}")(
        k, n, b.data_ptr(), b.stride(0), b.stride(1), out.data_ptr()
    )
    return out

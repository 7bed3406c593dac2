"""Softmax cross-entropy of a block of logits, in place, in one pass of C per row.

The fused training loss (:func:`optuna_rnn.train.loss.linear_cross_entropy`) decodes a
block of rows into logits, then needs each row's loss and the logits' gradient (the
softmax less one at the target). Through torch that is a softmax, two gathers and a
scatter, and on the CPU torch's ``exp`` ran at about a nanosecond an element: over Penn
Treebank's 10,000 words a quarter of a step. Here each row is read twice (its maximum,
then the exponentials and their sum, kept in place) and written once (scaled by the
sum, less one at the target), with the vectorised ``exp`` the cell kernels use
(:data:`~optuna_rnn.kernels.codegen_c.MATH`). The loss is the row's log-sum-exp less its
target's logit, finite wherever the logits are, however small the target's probability.

``ornn_xent_{d}(rows, n, logits, ld, labels, mask, mean, losses)``: ``logits`` (``rows x
n``, row stride ``ld``) becomes the gradient of ``losses[i] = logsumexp(row i) - row
i[labels[i]]`` for the rows ``mask`` scores (all where it is null), and the rows it does not
score zero loss and zero gradient: the small decoders' loss reads every position of a
batch and scores some. With ``mean`` the gradient is that of the scored rows' mean loss.
It returns the number of rows scored, or (touching nothing) minus one less the first
scored row whose label is outside ``[0, n)``.
The source is fixed text; it is built once per machine and dtype through the kernel cache.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from optuna_rnn.kernels.build import load_library
from optuna_rnn.kernels.codegen_c import DTYPES, MATH
from optuna_rnn.kernels.gemm import C_DTYPES

__all__ = ["available", "cross_entropy_"]

# Independent lanes per reduction: the compiler keeps them in vector registers (a float
# reduction in one accumulator is not vectorised without -ffast-math).
_LANES = 16

_BODY = """\
ORNN_SIMD double log(double);

/* Finite-math only here: a max reduction is vectorised only then. A NaN in the row
   still makes its loss NaN, through the sum below. */
__attribute__((optimize("finite-math-only", "no-signed-zeros")))
static {real} ornn_row_max_{d}(const {real} *x, long n) {{
  {real} top = x[0];
  for (long j = 1; j < n; ++j) top = x[j] > top ? x[j] : top;
  return top;
}}

long ornn_xent_{d}(long rows, long n, {real} *logits, long ld, const long *labels,
                   const unsigned char *mask, long mean, {real} *losses) {{
  long count = 0;
  for (long i = 0; i < rows; ++i) {{
    if (mask && !mask[i]) continue;
    if (labels[i] < 0 || labels[i] >= n) return -1 - i;
    ++count;
  }}
  {real} weight = mean && count ? ({real})1 / ({real})count : ({real})1;
  for (long i = 0; i < rows; ++i) {{
    {real} *restrict x = logits + i * ld;
    if (mask && !mask[i]) {{
      losses[i] = 0;
      for (long j = 0; j < n; ++j) x[j] = 0;
      continue;
    }}
    {real} top = ornn_row_max_{d}(x, n), target = x[labels[i]];
    long j, last = n - n % {lanes};
    {real} acc[{lanes}] = {{0}};
    for (j = 0; j < last; j += {lanes})
      for (long l = 0; l < {lanes}; ++l) {{
        {real} e = {exp}(x[j + l] - top);
        x[j + l] = e;
        acc[l] += e;
      }}
    {real} sum = 0;
    for (long l = 0; l < {lanes}; ++l) sum += acc[l];
    for (; j < n; ++j) {{
      x[j] = {exp}(x[j] - top);
      sum += x[j];
    }}
    losses[i] = ({real})log((double)sum) + top - target;
    {real} scale = weight / sum;
    for (j = 0; j < n; ++j) x[j] *= scale;
    x[labels[i]] -= weight;
  }}
  return count;
}}
"""


def source(dtype: str) -> str:
    """The C translation unit of ``ornn_xent_{dtype}`` ("f32" or "f64")."""
    real, exp, _ = DTYPES[dtype]
    header = "/* optuna_rnn.kernels.softmax: softmax cross-entropy in place. Do not edit. */\n"
    return header + MATH + _BODY.format(d=dtype, real=real, exp=exp, lanes=_LANES)


@functools.cache
def _function(dtype: str) -> ctypes._CFuncPtr | None:
    lib = load_library(source(dtype))
    if lib is None:
        return None
    fn = getattr(lib, f"ornn_xent_{dtype}")
    fn.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
    fn.argtypes += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
    fn.restype = ctypes.c_long
    return fn


def available(like: torch.Tensor) -> bool:
    """Whether :func:`cross_entropy_` runs for tensors like ``like``: float32 or float64 on
    the CPU, with a working compiler (built on first ask)."""
    key = C_DTYPES.get(like.dtype)
    return like.device.type == "cpu" and key is not None and _function(key) is not None


def cross_entropy_(
    logits: torch.Tensor,
    labels: torch.Tensor,
    losses: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    mean: bool = False,
) -> int:
    """Write each row's cross-entropy against ``labels`` into ``losses`` and turn
    ``logits`` (``rows x n``, rows contiguous) into its gradient: softmax less one at the
    label. ``labels`` are int64, in ``[0, n)`` where scored; ``losses`` a contiguous vector
    of ``rows``; needs :func:`available`.

    ``mask`` (bool, one per row; ``None``: every row) says which rows are scored: the
    others get zero loss and zero gradient, whatever their label. With ``mean`` the
    gradient is that of the scored rows' mean loss (each scored row's divided by their
    number). Returns the number of rows scored.
    """
    rows, n = logits.shape
    if (
        logits.stride(1) != 1
        or not (labels.dtype == torch.int64 and labels.is_contiguous() and labels.numel() == rows)
        or not (losses.is_contiguous() and losses.numel() == rows and losses.dtype == logits.dtype)
        or not (
            mask is None
            or (mask.dtype == torch.bool and mask.is_contiguous() and mask.numel() == rows)
        )
    ):
        raise ValueError(
            "cross_entropy_: rows must be contiguous and labels, losses and mask one per row"
        )
    fn = _function(C_DTYPES[logits.dtype])
    assert fn is not None
    scored = fn(
        rows,
        n,
        logits.data_ptr(),
        logits.stride(0),
        labels.data_ptr(),
        None if mask is None else mask.data_ptr(),
        int(mean),
        losses.data_ptr(),
    )
    if scored < 0:
        bad = -1 - scored
        raise ValueError(
            f"cross_entropy_: label {int(labels[bad])} of row {bad} is outside [0, {n})"
        )
    return scored

"""The names of a fused call's buffers, each for what it holds.

A fused layer's forward and backward keep their tensors in one dict by these names:
:class:`~optuna_rnn.kernels.layout.Slot` points into them, the C runner binds them by
name (:mod:`optuna_rnn.kernels.sequence`) and the CUDA graphs copy them
(:mod:`optuna_rnn.kernels.graphs`). Buffers are ``(rows, B, width * H)``: ``T`` rows,
one per step, unless said otherwise. A gradient's buffer is its value's name plus
``.grad``.
"""

from __future__ import annotations

__all__ = [
    "BIAS_GRADS",
    "OUT_GRAD",
    "PACKED",
    "X_GRAD",
    "X_MAPS",
    "X_MAPS_GRAD",
    "X",
    "bias",
    "grad",
    "pre",
    "product",
    "state",
    "stored",
    "weight",
]

X = "x"
"""The layer's input, ``(T, B, I)``."""

X_MAPS = "x_maps"
"""Every linear map of ``x`` at every step, computed before the loop as one product:
``(T, B, n * H)``, a column block per map."""

OUT_GRAD = "out.grad"
"""The gradient of the layer's output, ``(T, B, H)``."""

BIAS_GRADS = "biases.grad"
"""Every bias's gradient before the sum over the batch, a column block each (see
:func:`optuna_rnn.kernels.layout.bias_blocks`): ``(1, B, n * H)``, so that a backward
zeroes them, and sums them, as one tensor."""

PACKED = "packed"
"""Scratch of a C call: every weight packed into column panels for the products."""


def grad(name: str) -> str:
    """The buffer that holds the gradient of buffer ``name``'s values."""
    return f"{name}.grad"


X_GRAD = grad(X)
X_MAPS_GRAD = grad(X_MAPS)


def state(i: int) -> str:
    """State ``i`` (in ``plan.states`` order): ``T + 1`` rows, row 0 the initial state and
    row ``t + 1`` the state after step ``t``. Its gradient has two rows, alternating:
    step ``t`` hands it to step ``t - 1``."""
    return f"state{i}"


def product(p: int) -> str:
    """The result of per-step product ``p``: ``(T, B, n * H)``, a column block per map;
    a view of :data:`X_MAPS`'s blocks where the product is folded into them."""
    return f"product{p}"


def stored(node: int) -> str:
    """The value of plan node ``node``, a pointwise node the forward stores for the
    backward (a nonlinearity, or a value read outside its stage). Its gradient has one
    row, reused at every step."""
    return f"node{node}"


def pre(leaf: int) -> str:
    """The ``(H,)`` value of ``pre`` leaf ``leaf``, computed once per call by the
    prologue. Its gradient has one row: ``(1, B, H)``, summed over the batch after the
    loop."""
    return f"pre{leaf}"


def bias(name: str) -> str:
    """Bias ``name``, ``(H,)``."""
    return f"bias:{name}"


def weight(p: int) -> str:
    """Per-step product ``p``'s stacked weight, the right operand of its products:
    ``(H, n * H)`` (its maps' weights transposed) in the forward, ``(n * H, H)`` in the
    backward."""
    return f"weight{p}"

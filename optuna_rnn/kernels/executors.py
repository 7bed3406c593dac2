"""Run a pointwise program at one time step: compiled C through ctypes, or plain torch.

Binding happens once per sequence: the C binder precomputes every step's argument
pointers in one table, so a kernel call costs a single ctypes call.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from optuna_rnn.kernels.layout import Slot
from optuna_rnn.kernels.program import Program

__all__ = ["StepFn", "bind_c", "bind_torch", "bind_triton", "interpret", "offsets"]

StepFn = Callable[[int], None]

_TORCH_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "neg": torch.neg,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "dtanh": lambda y: 1 - y * y,
    "dsigmoid": lambda y: y * (1 - y),
    "drelu": lambda y: (y > 0).to(y.dtype),
}


def interpret(prog: Program, views: Sequence[torch.Tensor]) -> None:
    """Execute ``prog`` with torch ops on whole ``(B, H)`` tensors."""
    env: dict[int, torch.Tensor] = {}
    for ins in prog.body:
        a = ins.args
        if ins.op == "load":
            env[ins.out] = views[a[0]].clone()
        elif ins.op == "store":
            views[a[0]].copy_(env[a[1]].expand_as(views[a[0]]))
        elif ins.op == "accum":
            views[a[0]].add_(env[a[1]])
        elif ins.op == "zero":
            views[a[0]].zero_()
        elif ins.op == "const":
            env[ins.out] = views[0].new_tensor(a[0]) if views else torch.tensor(a[0])
        else:
            env[ins.out] = _TORCH_OPS[ins.op](*(env[i] for i in a))


def bind_torch(
    prog: Program, slots: Sequence[Slot], buffers: Mapping[str, torch.Tensor], H: int
) -> StepFn:
    """Step function that interprets ``prog`` (the fallback without a compiler)."""
    return lambda t: interpret(prog, [s.view(buffers, t, H) for s in slots])


def offsets(slots: Sequence[Slot], buffers: Mapping[str, torch.Tensor], T: int, H: int) -> np.ndarray:
    """``(T, len(slots))`` element offsets of each argument's start at each step, from its
    buffer's first element (0 for vectors)."""
    steps = np.arange(T, dtype=np.int64)
    table = np.zeros((T, max(len(slots), 1)), dtype=np.int64)
    for i, s in enumerate(slots):
        if not s.vec:
            rows = (steps + s.shift) % s.mod if s.mod else steps + s.shift
            table[:, i] = s.block * H + rows * buffers[s.buffer].stride(0)
    return table


def bind_triton(
    kernel: Any, slots: Sequence[Slot], buffers: Mapping[str, torch.Tensor], T: int, B: int, H: int
) -> StepFn:
    """Step function that launches the Triton ``kernel`` with whole buffers and step
    ``t``'s element offsets (no per-step views, one compilation per kernel)."""
    from optuna_rnn.kernels.codegen_triton import BLOCK

    grid = ((B * H + BLOCK - 1) // BLOCK,)
    bases = [buffers[s.buffer] for s in slots]
    steps = offsets(slots, buffers, T, H)[:, : len(slots)].tolist()
    return lambda t: kernel[grid](*bases, *steps[t], B, H, BLOCK=BLOCK)


def bind_c(
    fn: ctypes._CFuncPtr,
    slots: Sequence[Slot],
    buffers: Mapping[str, torch.Tensor],
    T: int,
    B: int,
    H: int,
) -> StepFn:
    """Step function that calls the compiled ``fn`` with step ``t``'s pointers."""
    table = offsets(slots, buffers, T, H).astype(np.uint64)
    for i, s in enumerate(slots):
        buf = buffers[s.buffer]
        table[:, i] = buf.data_ptr() + table[:, i] * buf.element_size()
    base, stride = table.ctypes.data, table.shape[1] * 8

    def run(t: int) -> None:
        fn(B, H, base + t * stride)

    run.table = table  # type: ignore[attr-defined]  # keep the pointers alive with the closure
    return run

"""Run a pointwise program at one time step of the Python time loop: a Triton kernel, or
plain torch ops; and the per-step argument offsets that Triton and the C runner share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from optuna_rnn.kernels.layout import Slot
from optuna_rnn.kernels.program import Program

__all__ = ["StepFn", "bind_torch", "bind_triton", "interpret", "offsets"]

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


def offsets(
    slots: Sequence[Slot], buffers: Mapping[str, torch.Tensor], T: int, H: int
) -> np.ndarray:
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

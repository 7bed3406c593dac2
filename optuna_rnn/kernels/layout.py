"""Where every value and gradient of a plan lives in memory, step by step.

Buffers are ``(rows, B, width * H)`` tensors. A :class:`Slot` names a buffer, a column
block and which row a time step uses: step ``t`` reads row ``t + shift``, or
``(t + shift) % mod`` for buffers reused across steps (``mod=1``: one row; ``mod=2``:
two alternating rows, for state gradients handed from step ``t`` to ``t - 1``). Biases
are ``(H,)`` vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from optuna_rnn.cell.ir import BIAS, LINEAR, STATE, X
from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import BIAS_GRADS, grad
from optuna_rnn.kernels.plan import PRE, Plan
from optuna_rnn.kernels.program import Loc

__all__ = ["Slot", "bias_blocks", "slot"]


@dataclass(frozen=True)
class Slot:
    """One argument's memory: ``buffer[row(t), :, block*H:(block+1)*H]``."""

    buffer: str
    shift: int = 0
    mod: int | None = None
    block: int = 0
    width: int = 1
    vec: bool = False

    def row(self, t: int) -> int:
        return (t + self.shift) % self.mod if self.mod else t + self.shift

    def view(self, buffers: Mapping[str, torch.Tensor], t: int, H: int) -> torch.Tensor:
        """The ``(B, H)`` (or ``(H,)``) tensor this slot means at step ``t``."""
        buf = buffers[self.buffer]
        if self.vec:
            return buf
        return buf[self.row(t), :, self.block * H : (self.block + 1) * H]

    def views(self, buffers: Mapping[str, torch.Tensor], T: int, H: int) -> list[torch.Tensor]:
        """``[self.view(buffers, t, H) for t in range(T)]``, made in a few tensor ops."""
        buf = buffers[self.buffer]
        if self.vec:
            return [buf] * T
        if self.width > 1:
            buf = buf.narrow(2, self.block * H, H)
        rows = buf.unbind(0)
        return [rows[self.row(t)] for t in range(T)]

    def rows(self, buffers: Mapping[str, torch.Tensor], T: int, H: int) -> torch.Tensor:
        """``(T, B, H)``: this slot at every step (per-step buffers only)."""
        assert self.mod is None and not self.vec
        buf = buffers[self.buffer]
        return buf[self.shift : self.shift + T, :, self.block * H : (self.block + 1) * H]


def bias_blocks(plan: Plan) -> tuple[str, ...]:
    """The plan's biases in node order: the column blocks of
    :data:`~optuna_rnn.kernels.buffers.BIAS_GRADS`."""
    return tuple(dict.fromkeys(n.name for n in plan.nodes if n.op == BIAS))


def _linear_block(plan: Plan, node: int, is_grad: bool) -> Slot:
    def of(buffer: str) -> str:
        return grad(buffer) if is_grad else buffer

    if node in plan.x_linears:
        return Slot(of(names.X_MAPS), block=plan.x_linears.index(node), width=len(plan.x_linears))
    for p, prod in enumerate(plan.products):
        if node in prod.linears:
            return Slot(
                of(names.product(p)), block=prod.linears.index(node), width=len(prod.linears)
            )
    raise AssertionError(f"linear node {node} is in no product")


def slot(plan: Plan, loc: Loc) -> Slot:
    """The memory behind ``loc`` (see :data:`optuna_rnn.kernels.program.Loc`)."""
    kind = loc[0]
    if kind == "dout":
        return Slot(names.OUT_GRAD)
    if kind in ("carry", "state_out"):
        state = names.state(plan.states.index(loc[1]))
        return Slot(grad(state), shift=1, mod=2) if kind == "carry" else Slot(state, shift=1)
    node = loc[1]
    op = plan.nodes[node].op
    is_grad = kind == "grad"
    if op == X:
        return Slot(names.X_GRAD if is_grad else names.X)
    if op == PRE:
        return Slot(grad(names.pre(node)), mod=1) if is_grad else Slot(names.pre(node), vec=True)
    if op == STATE:
        state = names.state(plan.states.index(plan.nodes[node].name))
        return Slot(grad(state), mod=2) if is_grad else Slot(state)
    if op == BIAS:
        name = plan.nodes[node].name
        if not is_grad:
            return Slot(names.bias(name), vec=True)
        blocks = bias_blocks(plan)
        return Slot(BIAS_GRADS, mod=1, block=blocks.index(name), width=len(blocks))
    if op == LINEAR:
        return _linear_block(plan, node, is_grad)
    if is_grad:
        return Slot(grad(names.stored(node)), mod=1)
    owners = [s for s in plan.states if plan.updates[s] == node]
    if owners:
        return Slot(names.state(plan.states.index(owners[0])), shift=1)
    return Slot(names.stored(node))

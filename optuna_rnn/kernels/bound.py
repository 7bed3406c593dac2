"""A fused layer's forward and backward on buffers made once, for a caller that runs the
same shape step after step (the trainer's autograd-free step).

A call of :func:`~optuna_rnn.kernels.passes.forward` and
:func:`~optuna_rnn.kernels.passes.gradients` works out its buffers' names and shapes,
takes them from the workspace, builds their views and the C loop's argument table, and
gives the buffers back, every call: at a small task's shapes (T=10, B=20, H=52), a good
part of a training step (``benchmarks/RESULTS.md``). A :class:`BoundLayer` does it once
for one ``(T, B)``: every buffer of both passes is its own, the views and the loops'
arguments are made in its constructor, and the buffers that start each backward at zero
are views of one block, zeroed by one fill. A run writes only in place: the caller puts
the layer's input into :attr:`BoundLayer.x_maps` (or hands ``x`` to have its product
made) and the output's gradient into :attr:`BoundLayer.out_grad`. Cells with ``pre``
leaves are not bound: their loop reads values each call computes from the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import OUT_GRAD, X_MAPS, X
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.passes import (
    Stacks,
    folded_views,
    forward_shapes,
    given_buffers,
    gradient_shapes,
    weight_gradients,
)

__all__ = ["BoundLayer"]


class BoundLayer:
    """One layer of ``core`` at ``T`` steps of ``B`` rows of width ``H`` (input ``x_width``
    wide), on the weights ``stacks`` and ``biases`` (tensors updated in place between
    runs), its buffers on the device and of the dtype of ``like``: :meth:`forward` and
    :meth:`backward`, the gradients that ``needs`` asks for
    (see :meth:`FusedCell.gradient_outputs
    <optuna_rnn.kernels.fused.FusedCell.gradient_outputs>`) written into ``out`` where
    it holds their tensor (``dx``, ``dstack{j}``, ``dbias``)."""

    def __init__(
        self,
        core: FusedCell,
        *,
        T: int,
        B: int,
        H: int,
        x_width: int,
        stacks: Stacks,
        biases: Sequence[torch.Tensor],
        needs: Sequence[bool],
        out: Mapping[str, torch.Tensor],
        like: torch.Tensor,
    ) -> None:
        self.core, self.T, self.stacks, self.out = core, T, stacks, out
        self.wanted = core.gradient_outputs(needs)
        plan = core.plan
        if plan.pre:
            raise ValueError(
                "BoundLayer runs cells without pre leaves (their values come per call)"
            )
        wx, weights = stacks
        wx_rows = None if wx is None else wx.shape[0]
        # The forward: its inputs (biases, transposed weights), every buffer it makes,
        # state 0's, the x maps' (always its own: the caller writes them), raw x.
        fwd = given_buffers(core, weights, (), biases)
        shapes = {names.state(0): (T + 1, B, H), **forward_shapes(core, T, B, H, wx_rows)}
        if plan.reads_x:
            shapes[X] = (T, B, x_width)
        fwd |= {name: like.new_empty(shape) for name, shape in shapes.items()}
        folded_views(core, fwd, H, gradient=False)
        # The backward: what the forward kept, the weights as they are, its gradients.
        bwd = {n: b for n, b in fwd.items() if n in core.kept or n in core.saved}
        bwd |= {names.weight(p): w for p, w in enumerate(weights)}
        stored, zeroed = gradient_shapes(core, T, B, H, x_width, wx_rows)
        bwd |= {name: like.new_empty(shape) for name, shape in stored.items()}
        bwd[OUT_GRAD] = like.new_empty(T, B, H)
        self._zeros = like.new_empty(sum(math.prod(shape) for shape in zeroed.values()))
        at = 0
        for name, shape in zeroed.items():
            bwd[name] = self._zeros[at : at + math.prod(shape)].view(shape)
            at += math.prod(shape)
        folded_views(core, bwd, H, gradient=True)
        self.forward_buffers, self.backward_buffers = fwd, bwd
        self._forward = core.bind_loop(False, fwd, T, B, H)
        self._backward = core.bind_loop(True, bwd, T, B, H)
        #: Where the caller writes the x maps (``None``: the cell has none), raw x (where
        #: the cell reads it), and the output's gradient; the layer's output.
        self.x_maps = fwd.get(X_MAPS)
        self.x = fwd.get(X)
        self.out_grad = bwd[OUT_GRAD]
        self.output = fwd[names.state(0)][1:]

    def forward(self, x: torch.Tensor | None, states: Sequence[torch.Tensor] | None) -> None:
        """The forward from the initial ``states`` (``None``: zeros): with ``x``
        (``(T, B, x_width)``), its x maps and raw x are taken from it first; without,
        the caller has written them."""
        fwd = self.forward_buffers
        if x is not None:
            wx = self.stacks[0]
            if wx is not None:
                rows = self.x_maps.view(-1, wx.shape[0])
                torch.mm(x.reshape(rows.shape[0], -1), wx.t(), out=rows)
            if self.x is not None:
                self.x.copy_(x)
        for i in range(len(self.core.plan.states)):
            if states is None:
                fwd[names.state(i)][0].zero_()
            else:
                fwd[names.state(i)][0].copy_(states[i])
        self._forward()

    def finals(self) -> list[torch.Tensor]:
        """Each state after the last step (views, overwritten by the next forward)."""
        fwd = self.forward_buffers
        return [fwd[names.state(i)][self.T] for i in range(len(self.core.plan.states))]

    def backward(self, x: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The backward of the last forward, whose input was ``x`` (``None``: given as x
        maps, and neither its gradient nor the x maps' weights' wanted), from the
        gradient in :attr:`out_grad` (none through the final states): the wanted
        gradients."""
        self._zeros.zero_()
        self._backward()
        return weight_gradients(
            self.core, self.backward_buffers, x, self.stacks, self.wanted, self.out
        )

"""The fused backend's layer: one call of :mod:`optuna_rnn.kernels.ops`' forward
operator per layer and sequence.

Under ``torch.compile`` a layer is one ``optuna_rnn::fused_forward`` node (and, to
train, one ``optuna_rnn::fused_backward``); eagerly it runs the same implementation and
gradient formulas as one autograd node, without the dispatcher. Under ``torch.export`` it runs the
reference backend's torch ops instead, so an exported program holds aten operators alone
and runs where ``optuna_rnn`` is not installed. A call with nothing to differentiate
(``torch.no_grad``, frozen weights) runs the forward alone: no autograd node, and its
scratch goes back at once.
"""

from __future__ import annotations

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.ops import FusedFunction, fused_forward, run_forward
from optuna_rnn.nn.backends import LayerParams, LayerRunner
from optuna_rnn.nn.reference import reference_backend, values_of

__all__ = ["FusedLayer", "fused_backend"]


class FusedLayer:
    """``core`` as a :data:`~optuna_rnn.nn.backends.LayerRunner`."""

    def __init__(self, core: FusedCell) -> None:
        self.core = core
        self._reference = reference_backend(core.cell)

    def __call__(
        self, params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if torch.compiler.is_exporting():
            return self._reference(params, x, states)
        core = self.core
        maps = [params.weights[n] for n in core.map_names]
        biases = [params.biases[n] for n in core.biases]
        pres = self._prologue(params, x, states[0].shape[-1])
        keep = torch.is_grad_enabled() and any(
            t.requires_grad for t in (x, *states, *maps, *pres, *biases)
        )
        if keep and not torch.compiler.is_compiling():
            out, *finals = FusedFunction.apply(
                core.key, (len(states), len(maps), len(pres)), x, *states, *maps, *pres, *biases
            )
            return out, tuple(finals)
        run = fused_forward if torch.compiler.is_compiling() else run_forward
        outputs = run(core.key, x, list(states), maps, pres, biases, keep)
        n = len(core.saved) if keep else 1
        return outputs[0][1:], tuple(outputs[n : n + len(states)])

    def _prologue(self, params: LayerParams, x: torch.Tensor, H: int) -> list[torch.Tensor]:
        """The ``pre`` leaves' values, ``(H,)`` each, through autograd."""
        plan = self.core.plan
        if not plan.pre:
            return []
        values = values_of(self.core.cell, params, x, plan.prologue)
        return [values[plan.pre[leaf]].expand(H) for leaf in sorted(plan.pre)]


_compiled: dict[tuple, FusedLayer] = {}


def fused_backend(cell: Cell) -> LayerRunner:
    """Bind ``cell`` to the fused backend (compiled once per structure and process)."""
    key = (cell.nodes, tuple(cell.updates.items()))
    if key not in _compiled:
        _compiled[key] = FusedLayer(FusedCell(cell))
    return _compiled[key]

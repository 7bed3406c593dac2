"""A fused layer as one autograd node: the forward and backward passes of
:mod:`optuna_rnn.kernels.passes` bound to autograd."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch

from optuna_rnn.kernels.buffers import X
from optuna_rnn.kernels.passes import forward_outputs, gradients
from optuna_rnn.kernels.workspace import scratch

if TYPE_CHECKING:
    from optuna_rnn.kernels.fused import FusedCell

__all__ = ["FusedFunction"]


class FusedFunction(torch.autograd.Function):
    """The layer: x maps for all steps as one product, both time loops, and every gradient.

    The x maps' product runs in here, not as autograd's own ``mm``, so that it and its
    gradient are this call's scratch (see :mod:`optuna_rnn.kernels.workspace`). It takes
    each map's weight as it is and stacks them itself (on CUDA inside the call's graph),
    returning each map's gradient as a view of its stack's.
    """

    @staticmethod
    def forward(ctx: Any, core: FusedCell, x: torch.Tensor, n_states: int, n_pres: int,
                *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_maps = len(core.map_names)
        states, maps = rest[:n_states], rest[n_states : n_states + n_maps]
        pres, biases = rest[n_states + n_maps : n_states + n_maps + n_pres], rest[n_states + n_maps + n_pres :]
        x = x.contiguous()
        result, stacks, taken = forward_outputs(core, x, states, maps, pres, biases, keep=True)
        ctx.core, ctx.maps, ctx.stacks = core, maps, stacks
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not zeros
        ctx.buffers = {name: b for name, b in result.items() if name in core.kept}
        if X in core.kept:
            ctx.buffers[X] = x
        ctx.save_for_backward(x)
        saved = {b.untyped_storage().data_ptr() for b in ctx.buffers.values()}  # views too
        scratch.give(b for b in taken if b.untyped_storage().data_ptr() not in saved)
        later = [b for b in taken if b.untyped_storage().data_ptr() in saved]
        if later:  # once autograd lets go of the graph, never while a backward may still run
            weakref.finalize(ctx, scratch.give, later)
        return (result["out"], *(result[f"final{i}"] for i in range(n_states)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, *dfinals: torch.Tensor | None) -> tuple:
        core = ctx.core
        (x,) = ctx.saved_tensors
        graphs = core.call_graphs(True, x)
        if graphs is None:
            taken: list[torch.Tensor] = []
            grads = gradients(core, dict(ctx.buffers), x, ctx.stacks, dout, dfinals, ctx.needs_input_grad, taken)
            scratch.give(taken)
        else:
            inputs = {**ctx.buffers, "x": x}
            for k, m in enumerate(ctx.maps):
                inputs[f"m{k}"] = m
            # Gradients as from out.sum() (expanded) come in as whole tensors.
            for name, d in (("dout", dout), *((f"dfinal{i}", d) for i, d in enumerate(dfinals))):
                if d is not None:
                    inputs[name] = d.contiguous()
            grads = graphs(inputs, ctx.needs_input_grad)
        return tuple(map(grads.get, core.grad_names))

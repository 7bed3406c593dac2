"""A fused layer as two PyTorch custom operators, so that ``torch.compile`` and
``torch.export`` see one node per layer call.

``optuna_rnn::fused_forward`` and ``optuna_rnn::fused_backward`` run the passes of
:mod:`optuna_rnn.kernels.passes` for the :class:`~optuna_rnn.kernels.fused.FusedCell`
that their first argument names (its :attr:`~optuna_rnn.kernels.fused.FusedCell.key`).
Each has a fake implementation (the shapes of its outputs, for tracing), and the
forward's gradient is the backward operator (``register_autograd``), so the operators
pass ``torch.library.opcheck``.

The forward returns state 0's buffer (rows ``1..T`` are the layer's output), each state
after the last step, and, when it ``keep``\\ s what the backward reads, the other buffers
that the backward reads and the stacked weights: residuals, whose gradients are ignored.
Only the output rows, row 0 (the initial state) and the final states carry gradients.
"""

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import X
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.passes import backward, forward
from optuna_rnn.kernels.workspace import scratch

__all__ = ["FusedFunction", "fused_backward", "fused_forward", "run_backward", "run_forward"]


def run_forward(
    cell: str,
    x: Tensor,
    states: list[Tensor],
    maps: list[Tensor],
    pres: list[Tensor],
    biases: list[Tensor],
    keep: bool,
) -> list[Tensor]:
    """The forward pass of the cell named ``cell`` over ``x`` (``(T, B, I)``) from
    ``states`` (``(B, H)`` each): the outputs :meth:`FusedCell.forward_outputs
    <optuna_rnn.kernels.fused.FusedCell.forward_outputs>` names. ``maps``, ``pres`` and
    ``biases`` are ordered as the cell's ``map_names``, ``plan.pre`` and ``biases``."""
    core = FusedCell.of(cell)
    outputs, taken = forward(core, x.contiguous(), states, maps, pres, biases, keep=keep)
    returned = {t.untyped_storage().data_ptr() for t in outputs}
    scratch.give(b for b in taken if b.untyped_storage().data_ptr() not in returned)
    return outputs


fused_forward = torch.library.custom_op("optuna_rnn::fused_forward", run_forward, mutates_args=())


@fused_forward.register_fake
def _(
    cell: str,
    x: Tensor,
    states: list[Tensor],
    maps: list[Tensor],
    pres: list[Tensor],
    biases: list[Tensor],
    keep: bool,
) -> list[Tensor]:
    core = FusedCell.of(cell)
    h = states[0]
    return [h.new_empty(core.output_shape(name, x, h, maps)) for name in core.forward_outputs(keep)]


def run_backward(
    cell: str,
    x: Tensor,
    saved: list[Tensor],
    stacks: list[Tensor],
    pres: list[Tensor],
    biases: list[Tensor],
    dout: Tensor | None,
    dfinals: list[Tensor | None],
    needs: list[bool],
) -> list[Tensor]:
    """The backward pass of the cell named ``cell``: the gradients that
    :meth:`FusedCell.gradient_outputs <optuna_rnn.kernels.fused.FusedCell.gradient_outputs>`
    names for ``needs``, given the forward's ``saved`` buffers, every stack of the maps
    (:meth:`FusedCell.list_stacks <optuna_rnn.kernels.fused.FusedCell.list_stacks>`), and
    the gradients of the output (``(T, B, H)``) and of the final states (``None``: zero)."""
    core = FusedCell.of(cell)
    x = x.contiguous()
    kept = dict(zip(core.saved, saved))
    given = {X: x, **{names.pre(leaf): p for leaf, p in zip(sorted(core.plan.pre), pres)}}
    given |= {names.bias(name): b for name, b in zip(core.biases, biases)}
    kept |= {name: t.contiguous() for name, t in given.items() if name in core.kept}
    grads = backward(core, x, kept, [s.contiguous() for s in stacks], dout, dfinals, needs)
    return [grads[name] for name in core.gradient_outputs(needs)]


fused_backward = torch.library.custom_op(
    "optuna_rnn::fused_backward", run_backward, mutates_args=()
)


@fused_backward.register_fake
def _(
    cell: str,
    x: Tensor,
    saved: list[Tensor],
    stacks: list[Tensor],
    pres: list[Tensor],
    biases: list[Tensor],
    dout: Tensor | None,
    dfinals: list[Tensor | None],
    needs: list[bool],
) -> list[Tensor]:
    core = FusedCell.of(cell)
    h = saved[0]
    B, H = h.shape[1:]
    out = []
    for name in core.gradient_outputs(needs):
        if name == "dx":
            out.append(x.new_empty(x.shape))
        elif name.startswith("dstack"):
            out.append(h.new_empty(stacks[int(name[6:])].shape))
        elif name == "dbias":
            out.append(h.new_empty(core.bias_blocks[0] * H))
        else:
            out.append(h.new_empty((B, H) if name.startswith("dh") else (H,)))
    return out


def _setup_context(ctx: Any, inputs: tuple, output: Sequence[Tensor]) -> None:
    """The operator's context: everything the backward reads saved for backward."""
    stacks = _context(ctx, inputs, output)
    if ctx.keep:
        _, x, _, _, pres, biases, _ = inputs
        ctx.save_for_backward(x, *output[: ctx.counts[0]], *stacks, *pres, *biases)


def _context(ctx: Any, inputs: tuple, output: Sequence[Tensor]) -> list[Tensor]:
    """Note on ``ctx`` what the backward needs besides tensors; the stacks of the maps
    (:meth:`FusedCell.list_stacks <optuna_rnn.kernels.fused.FusedCell.list_stacks>`)."""
    cell, x, states, maps, pres, biases, keep = inputs
    ctx.keep = keep
    if not keep:
        return []
    core = FusedCell.of(cell)
    n_saved, n_states = len(core.saved), len(states)
    stacked = iter(output[n_saved + n_states :])
    stacks = [
        next(stacked) if j in core.stacked else maps[a] for j, (a, _) in enumerate(core.stack_spans)
    ]
    ctx.cell, ctx.counts = cell, (n_saved, len(stacks), len(pres), len(biases))
    ctx.needs = [t.requires_grad for t in (x, *states, *maps, *pres, *biases)]
    ctx.needs_states = ctx.needs[1 : 1 + n_states]
    ctx.set_materialize_grads(False)
    return stacks


def _backward(ctx: Any, grads: list[Tensor | None]) -> tuple:
    dstate, n = grads[0], ctx.counts[0]  # row 0 of state 0's buffer is the initial state
    dout, dinitial = (None, None) if dstate is None else (dstate[1:], dstate[0])
    x, *rest = ctx.saved_tensors
    return _gradients(
        ctx,
        (x, rest[:n], rest[n:]),
        dout,
        grads[n : n + len(ctx.needs_states)],
        dinitial,
        fused_backward,
    )


def _gradients(
    ctx: Any,
    tensors: tuple[Tensor, Sequence[Tensor], Sequence[Tensor]],
    dout: Tensor | None,
    dfinals: Sequence[Tensor | None],
    dinitial: Tensor | None,
    run: Callable[..., list[Tensor]],
) -> tuple:
    """The gradients of ``fused_forward``'s inputs (lists for list inputs) from those of
    the output, the final states and (``dinitial``) row 0 of state 0's buffer, the
    backward pass run by ``run`` (the operator, or its implementation). ``tensors``: the
    input ``x``, the forward's saved buffers, and the stacks, ``pre`` leaves and biases
    one after the other."""
    if not ctx.keep:
        raise RuntimeError(
            "optuna_rnn::fused_forward called with keep=False kept nothing to differentiate"
        )
    core = FusedCell.of(ctx.cell)
    x, saved, rest = tensors
    _, n_stacks, n_pres, _ = ctx.counts
    stacks, pres, biases = (
        rest[:n_stacks],
        rest[n_stacks : n_stacks + n_pres],
        rest[n_stacks + n_pres :],
    )
    n_states, needs = len(core.plan.states), ctx.needs
    result = run(ctx.cell, x, saved, stacks, pres, biases, dout, list(dfinals), needs)
    got = dict(zip(core.gradient_outputs(needs), result))
    dstates = [got.get(f"dh{i}") for i in range(n_states)]
    if dinitial is not None and needs[1]:
        dstates[0] = dinitial + dstates[0]
    H = saved[0].shape[-1]
    first_map = 1 + n_states
    dmaps: list[Tensor | None] = [None] * len(core.map_names)
    for j, (a, b) in enumerate(core.stack_spans):
        g = got.get(f"dstack{j}")
        if g is not None:
            parts = g.view(b - a, H, -1).unbind(0) if b - a > 1 else (g,)
            for k, part in enumerate(parts, a):
                dmaps[k] = part if needs[first_map + k] else None
    dbias = got.get("dbias")
    n_blocks, blocks = core.bias_blocks
    first_bias = first_map + len(dmaps) + n_pres
    rows = dbias.view(n_blocks, H).unbind(0) if dbias is not None else ()
    dbiases = [rows[k] if rows and needs[first_bias + j] else None for j, k in enumerate(blocks)]
    dpres = [got.get(f"dP{j}") for j in range(n_pres)]
    return None, got.get("dx"), dstates, dmaps, dpres, dbiases, None


fused_forward.register_autograd(_backward, setup_context=_setup_context)


class FusedFunction(torch.autograd.Function):
    """``fused_forward`` and its gradient as a plain autograd function, for eager calls:
    the operator's implementation and formulas without the dispatcher's per-call cost
    (more than a small layer's work), returning the layer's output and final states
    alone (each output of an autograd node costs time too). Its tensors come flat,
    ``counts`` saying how many states, maps and ``pre`` leaves.

    The buffers it saves come from the CPU workspace: they go back once autograd lets go
    of the graph, never while a backward may still run."""

    @staticmethod
    def forward(
        ctx: Any, cell: str, counts: tuple[int, int, int], *tensors: Tensor
    ) -> tuple[Tensor, ...]:
        inputs = (cell, *_unflatten(counts, tensors), True)
        outputs = run_forward(*inputs)
        _, x, _, _, pres, biases, _ = inputs
        stacks = _context(ctx, inputs, outputs)
        n = ctx.counts[0]
        # The inputs and state 0's buffer (the output's) are saved: autograd checks that
        # nothing changed them in place. The other buffers the forward made are the
        # backward's alone, kept plainly (saving a tensor costs more than a small step).
        ctx.save_for_backward(x, outputs[0], *stacks, *pres, *biases)
        ctx.buffers = outputs[1:n]
        if outputs[0].is_cpu:
            weakref.finalize(ctx, scratch.give, ctx.buffers)
        return outputs[0][1:], *outputs[n : n + counts[0]]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dout: Tensor | None, *dfinals: Tensor | None) -> tuple:
        x, state, *rest = ctx.saved_tensors
        _, dx, dstates, dmaps, dpres, dbiases, _ = _gradients(
            ctx, (x, [state, *ctx.buffers], rest), dout, dfinals, None, run_backward
        )
        return None, None, dx, *dstates, *dmaps, *dpres, *dbiases


def _unflatten(counts: tuple[int, int, int], tensors: Sequence[Tensor]) -> tuple:
    """``(x, states, maps, pres, biases)`` from ``FusedFunction``'s flat tensors."""
    n_states, n_maps, n_pres = counts
    x, rest = tensors[0], list(tensors[1:])
    states, maps = rest[:n_states], rest[n_states : n_states + n_maps]
    return (
        x,
        states,
        maps,
        rest[n_states + n_maps : n_states + n_maps + n_pres],
        rest[n_states + n_maps + n_pres :],
    )

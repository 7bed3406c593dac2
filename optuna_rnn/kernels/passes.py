"""A fused layer's forward and backward passes: their buffers, the products outside the
time loop, both loops, and every gradient.

Forward: the maps of ``x`` for all steps in one product, then the time loop
(:meth:`FusedCell.run_loop <optuna_rnn.kernels.fused.FusedCell.run_loop>`). Backward:
the loop in reverse, then the weight, bias, input and initial-state gradients, each
weight gradient as one product over all steps. On CUDA a whole pass runs through
:class:`~optuna_rnn.kernels.graphs.CallGraphs`; its inputs and outputs are then named
as :func:`forward_call` and :func:`backward_call` name them. On the CPU, buffers that
only the pass itself reads come from a pool (:mod:`optuna_rnn.kernels.workspace`)
rather than fresh pages: ``taken`` lists them, to go back when the pass is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import (
    BIAS_GRADS,
    OUT_GRAD,
    X_GRAD,
    X_MAPS,
    X_MAPS_GRAD,
    X,
    grad,
)
from optuna_rnn.kernels.workspace import scratch

if TYPE_CHECKING:
    from optuna_rnn.kernels.fused import FusedCell

__all__ = [
    "Stacks",
    "backward",
    "backward_call",
    "folded_views",
    "forward",
    "forward_call",
    "forward_shapes",
    "given_buffers",
    "gradient_shapes",
    "gradients",
    "stack",
    "weight_gradients",
]

Stacks = tuple[
    torch.Tensor | None, list[torch.Tensor]
]  # FusedCell.stacks: (x maps, each product's)


def stack(mats: list[torch.Tensor]) -> torch.Tensor:
    """The maps of one product (or of x) as one contiguous matrix, as the C loop expects."""
    return mats[0].contiguous() if len(mats) == 1 else torch.cat(mats)


def _scratch_all(
    ref: torch.Tensor, shapes: Sequence[tuple[int, ...]], taken: list[torch.Tensor] | None
) -> list[torch.Tensor]:
    """Uninitialised buffers of ``shapes`` that only this call reads: from the workspace
    on the CPU, taken at once, where ``taken`` records them to go back; plain
    allocations elsewhere."""
    if taken is None or not ref.is_cpu:
        return [ref.new_empty(shape) for shape in shapes]
    bufs = scratch.take_all(shapes, ref.dtype)
    taken += bufs
    return bufs


def given_buffers(
    core: FusedCell,
    weights: Sequence[torch.Tensor],
    pres: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The forward loop's buffers that are the call's inputs: the ``pre`` leaves'
    values, the biases, each product's weight transposed."""
    given = {names.pre(leaf): pre.contiguous() for leaf, pre in zip(sorted(core.plan.pre), pres)}
    for name, b in zip(core.biases, biases):
        given[names.bias(name)] = b.contiguous()
    for p, w in enumerate(weights):
        given[names.weight(p)] = w.t()
    return given


def forward(
    core: FusedCell,
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    maps: Sequence[torch.Tensor],
    pres: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    *,
    keep: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The forward pass for ``x`` (contiguous), through graphs where they run: the
    outputs that :meth:`FusedCell.forward_outputs
    <optuna_rnn.kernels.fused.FusedCell.forward_outputs>` names, and the scratch it took
    from the CPU workspace (none through graphs), outputs included."""
    graphs = core.call_graphs(False, x)
    if graphs is None:
        taken: list[torch.Tensor] = []
        result = _run_forward(core, x, states, core.stacks(maps), pres, biases, keep, taken)
    else:
        inputs = {X: x}
        for prefix, tensors in (
            ("h", [s.contiguous() for s in states]),
            ("m", maps),
            ("pre", pres),
            ("bias", biases),
        ):
            for k, t in enumerate(tensors):
                inputs[f"{prefix}{k}"] = t
        result, taken = graphs(inputs, keep), []
    return [result[name] for name in core.forward_outputs(keep)], taken


def forward_call(
    core: FusedCell, inputs: Mapping[str, torch.Tensor], keep: bool
) -> dict[str, torch.Tensor]:
    """:func:`_run_forward` for a graph's ``inputs``, named as :func:`forward` names them."""

    def group(prefix: str, n: int) -> list[torch.Tensor]:
        return [inputs[f"{prefix}{k}"] for k in range(n)]

    plan = core.plan
    stacks = core.stacks(group("m", len(core.map_names)))
    pres, biases = group("pre", len(plan.pre)), group("bias", len(core.biases))
    return _run_forward(
        core, inputs[X], group("h", len(plan.states)), stacks, pres, biases, keep, None
    )


def _run_forward(
    core: FusedCell,
    x: torch.Tensor,
    states: Sequence[torch.Tensor],
    stacks: Stacks,
    pres: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    keep: bool,
    taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward's outputs by name: state 0's buffer (rows ``1..T`` are the layer's
    output), each state after the last step as ``final{i}`` (copies), and with ``keep``
    the other buffers the backward reads (``core.saved``) and the stacks of more than one
    map (``stack{j}``)."""
    wx, weights = stacks
    buffers = _forward(core, x, wx, states, given_buffers(core, weights, pres, biases), taken)
    T = x.shape[0]
    result = {names.state(0): buffers[names.state(0)]}
    for i in range(len(states)):
        result[f"final{i}"] = buffers[names.state(i)][T].clone()
    if keep:
        for name in core.saved:
            result[name] = buffers[name]
        for j, s in enumerate(core.list_stacks(stacks)):
            if j in core.stacked:
                result[f"stack{j}"] = s
    return result


def forward_shapes(
    core: FusedCell, T: int, B: int, H: int, wx_rows: int | None
) -> dict[str, tuple[int, ...]]:
    """The buffers a forward call makes besides state 0's (whose rows ``1..T`` are the
    layer's output), by name and shape: the x maps (``wx_rows`` wide; ``None``: none
    made), the other states', each unfolded product's and each stored node's."""
    plan = core.plan
    own: dict[str, tuple[int, ...]] = {}
    if wx_rows is not None:
        own[X_MAPS] = (T, B, wx_rows)
    for i in range(1, len(plan.states)):
        own[names.state(i)] = (T + 1, B, H)
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        if block is None:
            own[names.product(p)] = (T, B, len(prod.linears) * H)
    for n in core.stored:
        own[names.stored(n)] = (T, B, H)
    return own


def folded_views(core: FusedCell, buffers: dict[str, torch.Tensor], H: int, gradient: bool) -> None:
    """Add each folded product's buffer (or, with ``gradient``, its gradient's) to
    ``buffers``: its column blocks of the x maps' (or of their gradient's); in a backward,
    a product's values only where the backward reads them."""
    plan = core.plan
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        if block is None:
            continue
        width = len(prod.linears) * H
        if gradient:
            buffers[grad(names.product(p))] = buffers[X_MAPS_GRAD].narrow(2, block * H, width)
        if not gradient or names.product(p) in core.kept:
            buffers[names.product(p)] = buffers[X_MAPS].narrow(2, block * H, width)


def _forward(
    core: FusedCell,
    x: torch.Tensor,
    wx: torch.Tensor | None,
    states: Sequence[torch.Tensor],
    given: dict[str, torch.Tensor],
    taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward pass: the x maps for all steps as one product, then the time loop.
    Returns the buffers (see :mod:`optuna_rnn.kernels.buffers`)."""
    ref = states[0]
    T, B, H = x.shape[0], *ref.shape
    buffers = dict(given)
    # The call's own buffers, taken at once; a folded product accumulates into its XW
    # blocks instead.
    own = forward_shapes(core, T, B, H, None if wx is None else wx.shape[0])
    buffers.update(zip(own, _scratch_all(ref, list(own.values()), taken)))
    if wx is not None:
        torch.mm(x.view(T * B, -1), wx.t(), out=buffers[X_MAPS].view(T * B, -1))
    if core.plan.reads_x:
        buffers[X] = x
    buffers[names.state(0)] = ref.new_empty(T + 1, B, H)
    for i, s in enumerate(states):
        buffers[names.state(i)][0].copy_(s)
    folded_views(core, buffers, H, gradient=False)
    core.run_loop(False, buffers, T, B, H)
    return buffers


def backward(
    core: FusedCell,
    x: torch.Tensor,
    kept: dict[str, torch.Tensor],
    stacks: Sequence[torch.Tensor],
    dout: torch.Tensor | None,
    dfinals: Sequence[torch.Tensor | None],
    needs: Sequence[bool],
) -> dict[str, torch.Tensor]:
    """The backward pass, through graphs where they run: the gradients that
    :meth:`FusedCell.gradient_outputs <optuna_rnn.kernels.fused.FusedCell.gradient_outputs>`
    names, given ``kept`` (the buffers the forward made and the inputs, by name), every
    map stack (``FusedCell.list_stacks``), the outputs' gradients (``None``: zero) and
    which inputs need a gradient."""
    graphs = core.call_graphs(True, x)
    if graphs is None:
        taken: list[torch.Tensor] = []
        grads = gradients(
            core, dict(kept), x, core.unlist_stacks(stacks), dout, dfinals, needs, taken
        )
        scratch.give(taken)
        return grads
    inputs = {**kept, X: x}
    for j, s in enumerate(stacks):
        inputs[f"stack{j}"] = s
    # Gradients as from out.sum() (expanded) come in as whole tensors.
    for name, d in ((OUT_GRAD, dout), *((f"dfinal{i}", d) for i, d in enumerate(dfinals))):
        if d is not None:
            inputs[name] = d.contiguous()
    return graphs(inputs, tuple(needs))


def backward_call(
    core: FusedCell, inputs: Mapping[str, torch.Tensor], needs: tuple[bool, ...]
) -> dict[str, torch.Tensor]:
    """:func:`gradients` for a graph's ``inputs``, named as :func:`backward` names them."""
    kept = {name: b for name, b in inputs.items() if name in core.kept or name in core.saved}
    stacks = core.unlist_stacks([inputs[f"stack{j}"] for j in range(len(core.stack_spans))])
    dfinals = [inputs.get(f"dfinal{i}") for i in range(len(core.plan.states))]
    return gradients(core, kept, inputs[X], stacks, inputs.get(OUT_GRAD), dfinals, needs, None)


def gradient_shapes(
    core: FusedCell, T: int, B: int, H: int, x_width: int, wx_rows: int | None
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The gradient buffers a backward call makes, by name and shape, as two maps: those
    some kernel stores whole at every step, and those that start at zero (kernels
    accumulate into them): the x maps' (``wx_rows`` wide; ``None``: none), each unfolded
    product's, raw x's (``x_width`` wide, where the cell reads it), the ``pre`` leaves',
    the exported nodes', the states' carries and the biases'."""
    plan = core.plan
    stored: dict[str, tuple[int, ...]] = {}
    zeroed: dict[str, tuple[int, ...]] = {}

    def add(name: str, shape: tuple[int, ...], whole: bool) -> None:
        (stored if whole else zeroed)[name] = shape

    if wx_rows is not None:
        add(X_MAPS_GRAD, (T, B, wx_rows), all(n in plan.stored_grads for n in plan.x_linears))
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        if block is None:
            whole = all(n in plan.stored_grads for n in prod.linears)
            add(grad(names.product(p)), (T, B, len(prod.linears) * H), whole)
    if plan.reads_x:
        add(X_GRAD, (T, B, x_width), plan.x_index in plan.stored_grads)
    for leaf in plan.pre:
        add(grad(names.pre(leaf)), (1, B, H), False)
    for n in plan.grad_exports:
        add(grad(names.stored(n)), (1, B, H), False)
    for i in range(len(plan.states)):
        add(grad(names.state(i)), (2, B, H), False)
    if core.biases:
        add(BIAS_GRADS, (1, B, core.bias_blocks[0] * H), False)
    return stored, zeroed


def gradients(
    core: FusedCell,
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    stacks: Stacks,
    dout: torch.Tensor | None,
    dfinals: Sequence[torch.Tensor | None],
    needs: Sequence[bool],
    taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The backward, given ``buffers`` (what the forward kept; the backward's own are added
    to it), the stacked weights, the outputs' gradients (``None``: zero) and which of the
    layer's inputs ``needs`` a gradient (see :meth:`FusedCell.gradient_outputs
    <optuna_rnn.kernels.fused.FusedCell.gradient_outputs>`, which names the result)."""
    plan = core.plan
    wx, weights = stacks
    for p, w in enumerate(weights):
        buffers[names.weight(p)] = w
    ref = buffers[names.state(0)]
    T, B, H = x.shape[0], *ref.shape[1:]
    # The gradient buffers only this call reads come from the workspace, taken at once
    # (the output's too, where it comes expanded, as from out.sum()); those it returns
    # (raw x's, the states') are its own.
    stored, zeroed = gradient_shapes(
        core, T, B, H, x.shape[-1], None if wx is None else wx.shape[0]
    )
    made = {**stored, **zeroed}
    if dout is not None and not dout.is_contiguous():
        made[OUT_GRAD] = (T, B, H)
    returned = {X_GRAD, *(grad(names.state(i)) for i in range(len(plan.states)))}
    pooled = {n: shape for n, shape in made.items() if n not in returned}
    buffers.update(zip(pooled, _scratch_all(ref, list(pooled.values()), taken)))
    for name, shape in made.items():
        if name not in pooled:
            buffers[name] = ref.new_empty(shape)
    for name in zeroed:
        buffers[name].zero_()
    if dout is None:
        buffers[OUT_GRAD] = ref.new_zeros(T, B, H)
    elif OUT_GRAD in made:
        buffers[OUT_GRAD].copy_(dout)
    else:
        buffers[OUT_GRAD] = dout
    folded_views(core, buffers, H, gradient=True)
    for i, d in enumerate(dfinals):
        if d is not None:
            buffers[grad(names.state(i))][T % 2].copy_(d)
    core.run_loop(True, buffers, T, B, H)
    return weight_gradients(core, buffers, x, stacks, core.gradient_outputs(needs))


def weight_gradients(
    core: FusedCell,
    buffers: Mapping[str, torch.Tensor],
    x: torch.Tensor | None,
    stacks: Stacks,
    wanted: Sequence[str],
    out: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` gradients (see :meth:`FusedCell.gradient_outputs
    <optuna_rnn.kernels.fused.FusedCell.gradient_outputs>`) once the backward loop has
    run on ``buffers``: each stack's as one product over all steps, the biases' as one
    sum, ``dx`` from the x maps' gradient. ``x``: the layer's input (``None`` where
    neither ``dx`` nor the x maps' stack is wanted). ``out``: tensors that a ``dx``, ``dstack{j}``
    or ``dbias`` result is written into (the result is then that tensor)."""
    out = out or {}
    wx, _ = stacks
    T, B, H = buffers[names.state(0)].shape
    T -= 1
    grads: dict[str, torch.Tensor] = {}
    if "dx" in wanted:
        dx = buffers.get(X_GRAD)
        target = out.get("dx")
        if wx is not None:
            assert x is not None
            dxw = buffers[X_MAPS_GRAD].view(T * B, -1)
            flat = None if target is None else target.view(T * B, -1)
            if dx is None:
                dx = torch.mm(dxw, wx, out=flat).view(x.shape)
            elif flat is None:
                dx = dx.view(T * B, -1).addmm_(dxw, wx).view(x.shape)
            else:
                dx = torch.addmm(dx.view(T * B, -1), dxw, wx, out=flat).view(x.shape)
        elif target is not None:
            dx = target.copy_(dx)
        grads["dx"] = dx
    for j, (dy, source) in enumerate(core.stack_sources):
        if f"dstack{j}" in wanted:  # the stack's product over all steps: d(x or source) W^T
            operand = x if source is None else source.rows(buffers, T, H)
            assert operand is not None
            grads[f"dstack{j}"] = torch.mm(
                buffers[dy].view(T * B, -1).T,
                operand.reshape(T * B, -1),
                out=out.get(f"dstack{j}"),
            )
    if "dbias" in wanted:
        grads["dbias"] = torch.sum(buffers[BIAS_GRADS][0], 0, out=out.get("dbias"))
    for i in range(len(core.plan.states)):
        if f"dh{i}" in wanted:
            grads[f"dh{i}"] = buffers[grad(names.state(i))][0]  # this call's own
    for j, leaf in enumerate(sorted(core.plan.pre)):
        if f"dP{j}" in wanted:
            grads[f"dP{j}"] = buffers[grad(names.pre(leaf))][0].sum(0)
    return grads

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

__all__ = ["Stacks", "backward_call", "forward_call", "forward_outputs", "gradients", "stack"]

Stacks = tuple[torch.Tensor | None, list[torch.Tensor]]  # FusedCell.stacks: (x maps, each product's)


def stack(mats: list[torch.Tensor]) -> torch.Tensor:
    """The maps of one product (or of x) as one contiguous matrix, as the C loop expects."""
    return mats[0].contiguous() if len(mats) == 1 else torch.cat(mats)


def _scratch(ref: torch.Tensor, shape: tuple[int, ...], taken: list[torch.Tensor] | None) -> torch.Tensor:
    """An uninitialised buffer that only this call reads: from the workspace on the CPU
    where ``taken`` records it to go back, a plain allocation elsewhere."""
    if taken is None or not ref.is_cpu:
        return ref.new_empty(shape)
    buf = scratch.take(shape, ref.dtype)
    taken.append(buf)
    return buf


def _given(
    core: FusedCell, weights: Sequence[torch.Tensor], pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The forward loop's buffers that are the call's inputs: the ``pre`` leaves'
    values, the biases, each product's weight transposed."""
    given = {names.pre(leaf): pre.contiguous() for leaf, pre in zip(sorted(core.plan.pre), pres)}
    for name, b in zip(core.biases, biases):
        given[names.bias(name)] = b.contiguous()
    for p, w in enumerate(weights):
        given[names.weight(p)] = w.t()
    return given


def forward_outputs(
    core: FusedCell, x: torch.Tensor, states: Sequence[torch.Tensor], maps: Sequence[torch.Tensor],
    pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], *, keep: bool,
) -> tuple[dict[str, torch.Tensor], Stacks | None, list[torch.Tensor]]:
    """:func:`_run_forward` for ``x`` (contiguous), through graphs where they run. Also
    returns the stacked weights (``None`` through graphs: the backward's graph stacks them
    again) and the scratch taken from the CPU workspace (none through graphs)."""
    graphs = core.call_graphs(False, x)
    if graphs is None:
        taken: list[torch.Tensor] = []
        stacks = core.stacks(maps)
        return _run_forward(core, x, states, stacks, pres, biases, keep, taken), stacks, taken
    inputs = {"x": x}
    for prefix, tensors in (("h", [s.contiguous() for s in states]), ("m", maps), ("pre", pres), ("bias", biases)):
        for k, t in enumerate(tensors):
            inputs[f"{prefix}{k}"] = t
    return graphs(inputs, keep), None, []


def forward_call(core: FusedCell, inputs: Mapping[str, torch.Tensor], keep: bool) -> dict[str, torch.Tensor]:
    """:func:`_run_forward` for a graph's ``inputs``, named as :func:`forward_outputs`
    names them."""
    def group(prefix: str, n: int) -> list[torch.Tensor]:
        return [inputs[f"{prefix}{k}"] for k in range(n)]

    plan = core.plan
    stacks = core.stacks(group("m", len(core.map_names)))
    pres, biases = group("pre", len(plan.pre)), group("bias", len(core.biases))
    return _run_forward(core, inputs["x"], group("h", len(plan.states)), stacks, pres, biases, keep, None)


def _run_forward(
    core: FusedCell, x: torch.Tensor, states: Sequence[torch.Tensor], stacks: Stacks,
    pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], keep: bool, taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward's outputs: ``out``, each state after the last step as ``final{i}``
    (copies), and with ``keep`` the buffers the backward reads (``core.kept`` but ``x``)."""
    wx, weights = stacks
    buffers = _forward(core, x, wx, states, _given(core, weights, pres, biases), taken)
    first = buffers[names.state(0)]
    T = first.shape[0] - 1
    result = {"out": first[1:]}
    for i in range(len(states)):
        result[f"final{i}"] = buffers[names.state(i)][T].clone()
    if keep:
        for name, b in buffers.items():
            if name in core.kept and name != X:
                result[name] = b
    return result


def _forward(
    core: FusedCell, x: torch.Tensor, wx: torch.Tensor | None, states: Sequence[torch.Tensor],
    given: dict[str, torch.Tensor], taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward pass: the x maps for all steps as one product, then the time loop.
    Returns the buffers (see :mod:`optuna_rnn.kernels.buffers`)."""
    plan = core.plan
    ref = states[0]
    T, B, H = x.shape[0], *ref.shape
    buffers = dict(given)
    if wx is not None:
        xw = _scratch(ref, (T, B, wx.shape[0]), taken)
        torch.mm(x.view(T * B, -1), wx.t(), out=xw.view(T * B, -1))
        buffers[X_MAPS] = xw
    if plan.reads_x:
        buffers[X] = x
    for i, s in enumerate(states):  # state 0's rows 1..T are the output; the others are this call's
        state = buffers[names.state(i)] = ref.new_empty(T + 1, B, H) if i == 0 else _scratch(ref, (T + 1, B, H), taken)
        state[0].copy_(s)
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        width = len(prod.linears) * H
        # A folded product accumulates into its XW blocks.
        buffers[names.product(p)] = (
            _scratch(ref, (T, B, width), taken) if block is None else buffers[X_MAPS].narrow(2, block * H, width)
        )
    for n in plan.exports:
        if n not in plan.updates.values():
            buffers[names.stored(n)] = _scratch(ref, (T, B, H), taken)
    core.run_loop(False, buffers, T, B, H)
    return buffers


def backward_call(core: FusedCell, inputs: Mapping[str, torch.Tensor], needs: tuple[bool, ...]) -> dict[str, torch.Tensor]:
    """:func:`gradients` for a graph's ``inputs``: what the forward kept, ``x``, each
    map's weight ``m{k}`` (stacked here again), and where given ``dout`` and ``dfinal{i}``."""
    kept = {name: b for name, b in inputs.items() if name in core.kept}
    stacks = core.stacks([inputs[f"m{k}"] for k in range(len(core.map_names))])
    dfinals = [inputs.get(f"dfinal{i}") for i in range(len(core.plan.states))]
    return gradients(core, kept, inputs["x"], stacks, inputs.get("dout"), dfinals, needs, None)


def gradients(
    core: FusedCell, buffers: dict[str, torch.Tensor], x: torch.Tensor, stacks: Stacks,
    dout: torch.Tensor | None, dfinals: Sequence[torch.Tensor | None], needs: tuple[bool, ...],
    taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The backward, given ``buffers`` (what the forward kept; the backward's own are added
    to it), the stacked weights, the outputs' gradients (``None``: zero) and which of
    the layer's inputs ``needs`` a gradient: ``dx``, ``dh{i}`` (initial states),
    ``dm{k}`` (each map's weight, views of its stack's gradient), ``dP{j}`` (``pre``
    leaves), ``db{j}`` (biases)."""
    plan = core.plan
    wx, weights = stacks
    for p, w in enumerate(weights):
        buffers[names.weight(p)] = w
    ref = buffers[names.state(0)]
    T, B, H = x.shape[0], *ref.shape[1:]
    if dout is None:
        buffers[OUT_GRAD] = ref.new_zeros(T, B, H)
    else:  # as from out.sum(), an expanded gradient
        buffers[OUT_GRAD] = dout if dout.is_contiguous() else _scratch(ref, (T, B, H), taken).copy_(dout)
    # Gradient buffers that some kernel accumulates into start at zero; the others are
    # stored whole by one kernel per step. dx is returned, the others only read here.
    def grads_of(nodes: tuple[int, ...], shape: tuple[int, ...], returned: bool = False) -> torch.Tensor:
        g = ref.new_empty(shape) if returned else _scratch(ref, shape, taken)
        return g if all(n in plan.stored_grads for n in nodes) else g.zero_()

    if wx is not None:
        buffers[X_MAPS_GRAD] = grads_of(plan.x_linears, (T, B, wx.shape[0]))
    if plan.reads_x:
        buffers[X_GRAD] = grads_of((plan.x_index,), x.shape, returned=True)
    for leaf in plan.pre:
        buffers[grad(names.pre(leaf))] = ref.new_zeros(1, B, H)
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        width = len(prod.linears) * H
        buffers[grad(names.product(p))] = (
            grads_of(prod.linears, (T, B, width)) if block is None
            else buffers[X_MAPS_GRAD].narrow(2, block * H, width)
        )
    for n in plan.grad_exports:
        buffers[grad(names.stored(n))] = ref.new_zeros(1, B, H)
    n_states = len(plan.states)
    for i in range(n_states):
        carry = buffers[grad(names.state(i))] = ref.new_zeros(2, B, H)
        if dfinals[i] is not None:
            carry[T % 2].copy_(dfinals[i])
    n_blocks, blocks = core.bias_blocks
    if blocks:
        buffers[BIAS_GRADS] = ref.new_zeros(1, B, n_blocks * H)
    core.run_loop(True, buffers, T, B, H)
    grads: dict[str, torch.Tensor] = {}
    dx = buffers.get(X_GRAD)
    first = 4 + n_states  # the layer's maps follow core, x, two counts and the states
    stacked = []  # each stack's gradient, None where none of its maps needs one
    if wx is not None:
        dxw = buffers[X_MAPS_GRAD].view(T * B, -1)
        stacked.append(dxw.T @ x.view(T * B, -1) if any(needs[first : first + len(core.x_names)]) else None)
        if needs[1]:
            dx = (dxw @ wx).view(x.shape) if dx is None else dx.view(T * B, -1).addmm_(dxw, wx).view(x.shape)
    if dx is not None:
        grads["dx"] = dx
    for p, source in enumerate(core.sources):
        stacked.append(buffers[grad(names.product(p))].view(T * B, -1).T @ source.rows(buffers, T, H).reshape(T * B, H))
    for (start, end), g in zip(core.map_spans[0 if wx is not None else 1 :], stacked):
        if g is not None:
            for k, part in enumerate(g.split(H) if end - start > 1 else (g,), start):
                grads[f"dm{k}"] = part
    if blocks:
        summed = buffers[BIAS_GRADS][0].sum(0).view(n_blocks, H).unbind(0)
        for j, k in enumerate(blocks):
            grads[f"db{j}"] = summed[k]
    for i in range(n_states):
        if needs[4 + i]:  # the layer's states follow core, x and two counts
            grads[f"dh{i}"] = buffers[grad(names.state(i))][0]  # this call's own
    for j, leaf in enumerate(sorted(plan.pre)):
        grads[f"dP{j}"] = buffers[grad(names.pre(leaf))][0].sum(0)
    return grads

"""The reference backend: plain per-node PyTorch autograd, the oracle for faster backends.

It walks ``cell.nodes`` in order at every time step, so it is as obviously right (and as
slow) as a cell can be run.
"""

from __future__ import annotations

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import (
    ADD,
    BIAS,
    LINEAR,
    MUL,
    ONE,
    RELU,
    SIGMOID,
    STATE,
    SUB,
    TANH,
    Node,
    X,
)
from optuna_rnn.nn.backends import LayerParams, LayerRunner

__all__ = ["reference_backend", "step", "values_of"]


def _value(
    node: Node,
    ins: list[torch.Tensor],
    params: LayerParams,
    x: torch.Tensor,
    states: dict[str, torch.Tensor],
) -> torch.Tensor:
    """One node's value from its inputs' values."""
    if node.op == X:
        return x
    if node.op == STATE:
        return states[node.name]
    if node.op == ONE:
        return x.new_ones(())
    if node.op == BIAS:
        return params.biases[node.name]
    if node.op == LINEAR:
        w = params.weights[node.name]
        operand = ins[0] if ins[0].dim() else ins[0].expand(w.shape[1])
        return operand @ w.T
    if node.op in (ADD, MUL):
        v = ins[0]
        for other in ins[1:]:
            v = v + other if node.op == ADD else v * other
        return v
    if node.op == SUB:
        return ins[0] - ins[1]
    if node.op == TANH:
        return torch.tanh(ins[0])
    if node.op == SIGMOID:
        return torch.sigmoid(ins[0])
    if node.op == RELU:
        return torch.relu(ins[0])
    raise AssertionError(f"unknown op {node.op!r}")


def step(
    cell: Cell, params: LayerParams, x: torch.Tensor, states: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Every node's value at one time step (``x`` is ``(B, I)``), in node order."""
    values: list[torch.Tensor] = []
    for node in cell.nodes:
        values.append(_value(node, [values[i] for i in node.inputs], params, x, states))
    return values


def values_of(
    cell: Cell, params: LayerParams, x: torch.Tensor, nodes: tuple[int, ...]
) -> dict[int, torch.Tensor]:
    """The values of ``nodes`` (ascending, closed under inputs, reading no state), with
    ``x`` as the input: the fused backend's prologue."""
    values: dict[int, torch.Tensor] = {}
    for i in nodes:
        node = cell.nodes[i]
        values[i] = _value(node, [values[j] for j in node.inputs], params, x, {})
    return values


def reference_backend(cell: Cell) -> LayerRunner:
    """Bind ``cell`` to the per-node autograd loop."""
    updates = cell.updates

    def run(
        params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        current = dict(zip(cell.states, states))
        outputs = []
        for t in range(x.shape[0]):
            values = step(cell, params, x[t], current)
            current = {s: values[i].expand_as(states[0]) for s, i in updates.items()}
            outputs.append(current["h"])
        return torch.stack(outputs), tuple(current[s] for s in cell.states)

    return run

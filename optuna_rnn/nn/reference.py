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
    X,
)
from optuna_rnn.nn.backends import LayerParams, LayerRunner

__all__ = ["reference_backend", "step"]


def step(
    cell: Cell, params: LayerParams, x: torch.Tensor, states: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    """Every node's value at one time step (``x`` is ``(B, I)``), in node order."""
    values: list[torch.Tensor] = []
    for node in cell.nodes:
        ins = [values[i] for i in node.inputs]
        if node.op == X:
            v = x
        elif node.op == STATE:
            v = states[node.name]
        elif node.op == ONE:
            v = x.new_ones(())
        elif node.op == BIAS:
            v = params.biases[node.name]
        elif node.op == LINEAR:
            w = params.weights[node.name]
            operand = ins[0] if ins[0].dim() else ins[0].expand(w.shape[1])
            v = operand @ w.T
        elif node.op == ADD:
            v = ins[0]
            for other in ins[1:]:
                v = v + other
        elif node.op == MUL:
            v = ins[0]
            for other in ins[1:]:
                v = v * other
        elif node.op == SUB:
            v = ins[0] - ins[1]
        elif node.op == TANH:
            v = torch.tanh(ins[0])
        elif node.op == SIGMOID:
            v = torch.sigmoid(ins[0])
        elif node.op == RELU:
            v = torch.relu(ins[0])
        else:
            raise AssertionError(f"unknown op {node.op!r}")
        values.append(v)
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

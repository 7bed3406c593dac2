"""Paths through a cell: the static analysis agrees with what the cell computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from optuna_rnn import CellRNN
from optuna_rnn.cell import Cell, Paths, live, paths, zoo
from optuna_rnn.cell.mutate import mutate
from optuna_rnn.spaces import GraphSpace


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_cell_remembers(name: str) -> None:
    assert paths(zoo.get(name)) == Paths(input=True, recurrent=True, memory=True)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("h' = tanh(W x + U h)", (True, True, True)),
        ("h' = tanh(W x)", (True, False, False)),  # feed-forward
        ("h' = tanh(U h + V c + b)\nc' = c * W x", (False, True, False)),  # c stays 0
        ("h' = tanh(W x) * h", (False, False, False)),  # h starts at 0 and stays there
        ("h' = relu(U h) + W x", (True, True, True)),  # h is W x after one step
        ("h' = relu(U h) * tanh(W x)", (False, False, False)),  # relu(0) = 0: h stays 0
        ("h' = sigmoid(U h) * tanh(W x)", (True, True, True)),
        ("h' = tanh(U c) + W x\nc' = sigmoid(V c + b)", (True, True, False)),  # x: not in c
        ("h' = tanh(U c)\nc' = W x", (True, False, False)),  # a one-step delay only
        ("h' = tanh(U c)\nc' = c + W x", (True, True, True)),  # through another state
        ("h' = tanh(W x + (U h - U h))", (True, False, False)),  # s - s is zero
    ],
)
def test_paths_of_small_cells(text: str, expected: tuple[bool, bool, bool]) -> None:
    cell = Cell.parse(text)
    assert paths(cell) == Paths(*expected)
    assert live(cell) is expected[2]


def _reaches_late(cell: Cell, seed: int, steps: int = 10) -> bool | None:
    """Whether changing x at step 3 changes h' in the last three steps (a loop through
    three states carries it every third step), for random weights and biases (double
    precision); ``None`` if h' overflows. By step 3 every state that is ever nonzero is
    (a state that starts at zero can gate x out of the first steps: ``h' = W (h * x) + b``)."""
    torch.manual_seed(seed)
    rnn = CellRNN(cell, 3, 5, backend="reference").double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.copy_(torch.randn_like(p) * 0.8)
    x = torch.randn(steps, 1, 3, dtype=torch.float64)
    other = x.clone()
    other[3] += 1.0
    with torch.no_grad():
        a, b = rnn(x)[0][-3:], rnn(other)[0][-3:]
    if not (a.isfinite().all() and b.isfinite().all()):
        return None
    return bool((a - b).abs().max() > 1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_memory_means_the_first_input_reaches_the_last_output(seed: int) -> None:
    """On random cells of the open space, and on mutants of them: x at step 3 changes h'
    four to six steps later (more steps than the cells have states, so a delay line without a
    loop has forgotten by then) only if ``memory``; and whenever ``memory``, but for
    cells with a ReLU (which cuts paths for some weights) or a subtraction (paths can
    cancel: ``h' = c - (W (h - c) + c)``, ``c' = 1 - (W (h - c) + x)`` has h' - c' = x - 1)."""
    rng = np.random.default_rng(seed)
    cell = GraphSpace(max_nodes=16).sample(rng)[0]
    if rng.random() < 0.5:
        cell = mutate(cell, rng, max_nodes=16)
    if not cell.learnable:
        return  # CellRNN refuses it; nothing computes
    memory, reaches = paths(cell).memory, _reaches_late(cell, seed)
    assume(reaches is not None)
    assert memory or not reaches
    if all(n.op not in ("relu", "sub") for n in cell.nodes):
        assert memory == reaches

"""The native backend (PyTorch's own LSTM/GRU kernels) for cells equal to lstm/gru_torch."""

from __future__ import annotations

import pytest
import torch

from optuna_rnn import Cell, CellRNN, zoo
from optuna_rnn.kernels.native import native_kind

# zoo lstm and gru_torch spelled differently: renamed weights, equations reordered.
RESPELLED = {
    "lstm": """
        h' = out * tanh(c')
        c' = forget * c + cand * inp
        out = sigm(A3 x + B3 h + b3)
        forget = sigm(A2 x + B2 h + b2)
        inp = sigm(A1 x + B1 h + b1)
        cand = tanh(A0 x + B0 h + b0)
    """,
    "gru_torch": """
        h' = (1 - u) * cand + u * h
        cand = tanh(Ac x + bc + reset * (Bc h + bhc))
        u = sigm(Au x + Bu h + bu)
        reset = sigm(Ar x + Br h + br)
    """,
}


@pytest.mark.parametrize("name", ["lstm", "gru_torch"])
@pytest.mark.parametrize("respell", [False, True])
def test_native_matches_the_reference(name, respell):
    cell = Cell.parse(RESPELLED[name]) if respell else zoo.get(name)
    assert native_kind(cell) == name
    torch.manual_seed(0)
    native = CellRNN(cell, 3, 5, num_layers=2, backend="native").double()
    ref = CellRNN(cell, 3, 5, num_layers=2, backend="reference").double()
    ref.load_state_dict(native.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    states = tuple(
        torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True) for _ in cell.states
    )
    arg = states if len(states) > 1 else states[0]
    got, want = native(x, arg), ref(x, arg)
    torch.testing.assert_close(got, want)
    w = torch.randn_like(want[0])
    g_native = torch.autograd.grad((got[0] * w).sum(), [x, *states, *native.parameters()])
    g_ref = torch.autograd.grad((want[0] * w).sum(), [x, *states, *ref.parameters()])
    torch.testing.assert_close(g_native, g_ref)


@pytest.mark.parametrize("name", ["gru", "lstm_b", "peephole"])
def test_native_refuses_other_cells(name):
    assert native_kind(zoo.get(name)) is None
    with pytest.raises(ValueError, match="cannot run this cell"):
        CellRNN(zoo.get(name), 3, 5, backend="native")

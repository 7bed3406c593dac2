"""Parameter names are the user's: names of nn.Module attributes build and train too."""

from __future__ import annotations

import keyword

import pytest
import torch
from torch import nn

from optuna_rnn import Cell, CellRNN
from optuna_rnn.cell.ir import RESERVED

MODULE_NAMES = sorted(
    n for n in dir(nn.Module) if n.isidentifier() and not keyword.iskeyword(n) and n not in RESERVED
)


def _cell(weights: list[str], bias: str) -> Cell:
    a, b, c = weights
    return Cell.parse(f"h' = tanh({a} x + {b} h + {c} (h * sigm(Wg x + {bias})))")


@pytest.mark.parametrize("start", range(0, len(MODULE_NAMES), 3))
def test_module_attribute_names_name_weights_and_biases(start):
    chunk = MODULE_NAMES[start : start + 3]
    bias = next((n for n in chunk if n.startswith("b")), "b" + chunk[0])  # biases start with b
    weights = ([n for n in chunk if n != bias] + ["Wa", "Wb", "Wc"])[:3]
    cell = _cell(weights, bias)
    rnn = CellRNN(cell, 3, 4, backend="reference")
    keys = set(rnn.state_dict())
    assert {f"layers.0.weight.{w}" for w in weights} | {f"layers.0.bias.{bias}"} <= keys
    assert rnn.layers[0].weight[weights[0]].shape == (4, 3)
    out, _ = rnn(torch.randn(5, 2, 3))
    out.sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())


def test_the_issue_names_run_on_every_backend_and_move_between_them():
    cell = _cell(["float", "train", "__class__"], "bcuda")
    torch.manual_seed(0)
    fused = CellRNN(cell, 3, 4, backend="fused", num_layers=2).double()
    ref = CellRNN(cell, 3, 4, backend="reference", num_layers=2).double()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(fused(x)[0], ref(x)[0])
    assert fused.layers[1].weight["__class__"].dtype == torch.float64
    assert "layers.1.weight.__class__" in fused.state_dict()

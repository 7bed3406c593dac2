"""CellRNN with the reference backend: against PyTorch's own RNNs, gradcheck, module API."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import optuna_rnn
from optuna_rnn import CellRNN as _CellRNN
from optuna_rnn import zoo

H = 5


def CellRNN(*args, **kwargs) -> _CellRNN:
    """The module under test, pinned to the reference backend."""
    return _CellRNN(*args, backend="reference", **kwargs)


def _copy_lstm(rnn: _CellRNN, ref: nn.LSTM) -> None:
    """nn.LSTM gate order is (input gate, forget, candidate, output) = our (j, f, i, o)."""
    with torch.no_grad():
        for k, layer in enumerate(rnn.layers):
            w_ih, w_hh = getattr(ref, f"weight_ih_l{k}"), getattr(ref, f"weight_hh_l{k}")
            bias = getattr(ref, f"bias_ih_l{k}") + getattr(ref, f"bias_hh_l{k}")
            for g, name in enumerate("jfio"):
                rows = slice(g * H, (g + 1) * H)
                layer.weight[f"Wx{name}"].copy_(w_ih[rows])
                layer.weight[f"Wh{name}"].copy_(w_hh[rows])
                layer.bias[f"b{name}"].copy_(bias[rows])


def _copy_gru(rnn: _CellRNN, ref: nn.GRU) -> None:
    """nn.GRU rows are (r, z, n); the candidate keeps its two biases apart."""
    with torch.no_grad():
        for k, layer in enumerate(rnn.layers):
            w_ih, w_hh = getattr(ref, f"weight_ih_l{k}"), getattr(ref, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(ref, f"bias_ih_l{k}"), getattr(ref, f"bias_hh_l{k}")
            for g, name in enumerate("rzn"):
                rows = slice(g * H, (g + 1) * H)
                layer.weight[f"Wx{name}"].copy_(w_ih[rows])
                layer.weight[f"Wh{name}"].copy_(w_hh[rows])
            for g, name in enumerate("rz"):
                rows = slice(g * H, (g + 1) * H)
                layer.bias[f"b{name}"].copy_(b_ih[rows] + b_hh[rows])
            layer.bias["bxn"].copy_(b_ih[2 * H :])
            layer.bias["bhn"].copy_(b_hh[2 * H :])


@pytest.mark.parametrize(
    "name, torch_cls, copy", [("lstm", nn.LSTM, _copy_lstm), ("gru_torch", nn.GRU, _copy_gru)]
)
@pytest.mark.parametrize("batch_first", [False, True])
def test_matches_pytorch(name, torch_cls, copy, batch_first):
    torch.manual_seed(0)
    ref = torch_cls(3, H, num_layers=2, batch_first=batch_first)
    rnn = CellRNN(zoo.get(name), 3, H, num_layers=2, batch_first=batch_first)
    copy(rnn, ref)
    x = (torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)).requires_grad_()
    states = tuple(torch.randn(2, 4, H, requires_grad=True) for _ in rnn.cell.states)
    arg = states if len(states) > 1 else states[0]
    out, state = rnn(x, arg)
    ref_out, ref_state = ref(x, arg)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(
        state if len(states) > 1 else (state,), ref_state if len(states) > 1 else (ref_state,)
    ):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, *states])
    ref_grads = torch.autograd.grad(ref_out.square().sum(), [x, *states])
    torch.testing.assert_close(grads, ref_grads, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", zoo.names())
def test_gradcheck_every_zoo_cell(name):
    torch.manual_seed(1)
    rnn = CellRNN(zoo.get(name), 3, 4, num_layers=2).double()
    params = dict(rnn.named_parameters())
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    states = tuple(
        torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True) for _ in rnn.cell.states
    )

    def f(x, *flat):
        ps = dict(zip(params, flat[: len(params)]))
        st = flat[len(params) :]
        out, final = torch.func.functional_call(rnn, ps, (x, st if len(st) > 1 else st[0]))
        return (out, *(final if len(st) > 1 else (final,)))

    assert torch.autograd.gradcheck(f, (x, *params.values(), *states), fast_mode=True)


def test_raw_x_gets_a_projection_only_when_widths_differ():
    cell = zoo.get("mut1")
    assert cell.reads_raw_x
    rnn = CellRNN(cell, 3, H, num_layers=2)
    assert rnn.layers[0].proj.shape == (H, 3)
    assert rnn.layers[1].proj is None
    assert rnn.layers[0].weight["Wxz"].shape == (H, H)
    assert CellRNN(cell, H, H).layers[0].proj is None
    plain = CellRNN(zoo.get("lstm"), 3, H)
    assert plain.layers[0].proj is None and plain.layers[0].weight["Wxi"].shape == (H, 3)


def test_init_scale_diagonal_offset_and_bias_init():
    cell = optuna_rnn.Cell.parse("h' = tanh(W[1] x + U h + b[0.5])")
    rnn = CellRNN(cell, 4, 4, init_scale=0.3)
    w = rnn.layers[0].weight["W"].detach()
    off = w - torch.eye(4)
    assert off.abs().max() <= 0.3 / 2 and w.diagonal().min() > 0.8
    assert rnn.layers[0].weight["U"].abs().max() <= 0.15
    assert torch.equal(rnn.layers[0].bias["b"].detach(), torch.full((4,), 0.5))
    torch.manual_seed(3)
    a = CellRNN(cell, 4, 4).state_dict()
    torch.manual_seed(3)
    b = CellRNN(cell, 4, 4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    rnn = CellRNN(zoo.get("gru"), 3, H, num_layers=2, dropout=0.5)
    x = torch.randn(6, 2, 3)
    rnn.eval()
    assert torch.equal(rnn(x)[0], rnn(x)[0])
    rnn.train()
    assert not torch.equal(rnn(x)[0], rnn(x)[0])
    one = CellRNN(zoo.get("gru"), 3, H, num_layers=1, dropout=0.5)
    assert torch.equal(one(x)[0], one(x)[0])


def test_state_carry_equals_one_long_run():
    torch.manual_seed(0)
    rnn = CellRNN(zoo.get("lstm"), 3, H, num_layers=2)
    x = torch.randn(8, 2, 3)
    full, (h, c) = rnn(x)
    first, state = rnn(x[:5])
    second, (h2, c2) = rnn(x[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), full)
    torch.testing.assert_close((h2, c2), (h, c))


def test_unbatched_input_matches_batch_of_one():
    torch.manual_seed(0)
    rnn = CellRNN(zoo.get("lstm"), 3, H)
    x = torch.randn(6, 3)
    out, (h, c) = rnn(x)
    ref, (_, cb) = rnn(x.unsqueeze(1))
    assert out.shape == (6, H) and h.shape == (1, H)
    torch.testing.assert_close(out, ref.squeeze(1))
    torch.testing.assert_close(c, cb.squeeze(1))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r(torch.randn(5, 2, 4)), "input has 4 features"),
        (lambda r: r(torch.randn(5)), "2-D"),
        (lambda r: r(torch.randn(0, 2, 3)), "empty"),
        (lambda r: r(torch.randn(5, 2, 3), torch.zeros(1, 2, H)), "tuple of 2"),
        (lambda r: r(torch.randn(5, 2, 3), (torch.zeros(1, 2, H),)), "tuple of 2"),
        (
            lambda r: r(torch.randn(5, 2, 3), (torch.zeros(1, 3, H), torch.zeros(1, 2, H))),
            "state 'h' has shape",
        ),
        (
            lambda r: r(torch.randn(5, 2, 3), (torch.zeros(1, 2, H), torch.zeros(2, 2, H))),
            "state 'c' has shape",
        ),
    ],
)
def test_bad_shapes_raise_clear_errors(call, message):
    rnn = CellRNN(zoo.get("lstm"), 3, H)
    with pytest.raises(ValueError, match=message):
        call(rnn)


def test_bad_arguments():
    cell = zoo.get("tanh")
    with pytest.raises(ValueError, match="hidden_size"):
        CellRNN(cell, 3, 0)
    with pytest.raises(ValueError, match="dropout"):
        CellRNN(cell, 3, 4, dropout=1.0)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        _CellRNN(cell, 3, 4, backend="nope")
    with pytest.raises(TypeError, match="Cell"):
        CellRNN("h' = tanh(W x)", 3, 4)


def test_state_dict_loads_into_a_new_module():
    torch.manual_seed(0)
    a = CellRNN(zoo.get("mut2"), 3, H, num_layers=2)
    b = CellRNN(zoo.get("mut2"), 3, H, num_layers=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0])

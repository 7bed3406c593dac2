"""Triton pointwise kernels, checked on the CPU under Triton's interpreter."""

from __future__ import annotations

import pytest
import torch
from test_kernels_graphs import assert_steps_match_reference

from optuna_rnn import Cell, CellRNN, zoo
from optuna_rnn.kernels.codegen_triton import triton_source
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.layer import FusedLayer
from optuna_rnn.nn.backends import BACKENDS, register_backend

pytest.importorskip("triton")


@pytest.fixture
def triton_backend(monkeypatch, tmp_path):
    """A "triton" backend for this test: the fused plan with Triton's CPU interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("OPTUNA_RNN_KERNEL_CACHE", str(tmp_path))
    register_backend("triton-test", lambda cell: FusedLayer(FusedCell(cell, pointwise="triton")))
    yield "triton-test"
    del BACKENDS["triton-test"]


@pytest.mark.parametrize(
    "cell",
    [
        zoo.get("lstm"),
        zoo.get("mut1"),  # raw x, two rounds
        zoo.get("janet"),  # the constant 1 inside a subtraction
        Cell.parse("h' = relu(W b1 + U h + V x)"),  # a linear map of a bias
        Cell.parse("h' = Wx x"),  # the update is a linear map: a copy node
    ],
    ids=["lstm", "mut1", "janet", "bias-source", "linear-update"],
)
def test_triton_kernels_match_the_reference(cell, triton_backend):
    torch.manual_seed(0)
    fast = CellRNN(cell, 3, 5, backend=triton_backend).double()
    ref = CellRNN(cell, 3, 5, backend="reference").double()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    states = tuple(
        torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True) for _ in cell.states
    )
    arg = states if len(states) > 1 else states[0]
    got, want = fast(x, arg)[0], ref(x, arg)[0]
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    w = torch.randn_like(want)
    wrt = [x, *states, *ref.parameters()]
    g_fast = torch.autograd.grad(
        (got * w).sum(), [x, *states, *fast.parameters()], allow_unused=True
    )
    g_ref = torch.autograd.grad((want * w).sum(), wrt, allow_unused=True)
    for a, b, like in zip(g_fast, g_ref, wrt):
        zero = torch.zeros_like(like)  # an unread initial state has no gradient in autograd
        torch.testing.assert_close(
            zero if a is None else a, zero if b is None else b, rtol=1e-9, atol=1e-9
        )


def test_triton_source_has_no_user_names():
    cell = Cell.parse("gate = sigm(Wsecret x + Usecret h + bsecret)\nh' = gate * h + tanh(V x)")
    source = triton_source(FusedCell(cell)._widths)
    assert "secret" not in source and "gate" not in source
    assert source.count("@triton.jit") == 2  # the forward and backward of the one stage


def test_triton_kernels_on_twin_buffers_match_the_reference(monkeypatch, tmp_path):
    """The CUDA path's CallGraphs without the graph: Triton launches bound to the twin."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("OPTUNA_RNN_KERNEL_CACHE", str(tmp_path))
    cores: dict[str, FusedCell] = {}
    register_backend(
        "triton-twin-test",
        lambda c: FusedLayer(
            cores.setdefault(str(c), FusedCell(c, pointwise="triton", graphs=True))
        ),
    )
    try:
        assert_steps_match_reference("triton-twin-test", zoo.get("mut1"), "cpu", [4, 4, 4])
    finally:
        del BACKENDS["triton-twin-test"]
    assert all(calls._entries for calls in next(iter(cores.values()))._graphs.values())

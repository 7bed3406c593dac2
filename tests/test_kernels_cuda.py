"""The fused (Triton) and native (cuDNN) backends on a CUDA GPU; skipped without one."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from test_kernels_fused import CONFIGS, assert_fused_matches_reference, mutants
from test_kernels_graphs import (
    CELL_IDS,
    CELLS,
    assert_steps_match_reference,
    assert_threads_get_their_own_gradients,
)

from optuna_rnn import CellRNN, zoo
from optuna_rnn.kernels import graphs
from optuna_rnn.kernels.layer import fused_backend

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 would put float32 products 1e-3 off; the tolerances are for real float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# A hidden width of 8 keeps every step's pointers 16-byte aligned, so Triton compiles
# one specialisation per kernel and dtype instead of one per alignment pattern.
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["lstm", "gru", "mut1", "janet", "fgr", "indrnn"])
def test_fused_triton_on_cuda(name, config):
    assert_fused_matches_reference(zoo.get(name), device="cuda", hidden=8, **config)


@pytest.mark.parametrize("k, cell", list(enumerate(mutants(8, seed=99))))
def test_fused_triton_mutants_on_cuda(k, cell):
    assert_fused_matches_reference(
        cell, device="cuda", hidden=8, seed=k, **CONFIGS[k % len(CONFIGS)]
    )


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("name", ["lstm", "gru_torch"])
def test_native_cudnn_on_cuda(name, config):
    assert_fused_matches_reference(
        zoo.get(name), device="cuda", hidden=8, backend="native", **config
    )


def test_auto_runs_every_cell_fused_on_cuda():
    x = torch.randn(7, 4, 3, device="cuda")
    for name in ("lstm", "gru_torch", "mut2"):
        auto = CellRNN(zoo.get(name), 3, 8).cuda()
        twin = CellRNN(zoo.get(name), 3, 8, backend="fused").cuda()
        twin.load_state_dict(auto.state_dict())
        assert torch.equal(auto(x)[0], twin(x)[0])


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_cuda_graphs_replay_the_calls_as_the_reference_computes(cell):
    # Length 5: launched, then captured, then replayed; 7: launched once.
    assert_steps_match_reference("fused", cell, "cuda", [5, 5, 5, 7, 5])
    calls = fused_backend(cell).core._graphs
    entries = [
        e for direction in (False, True) for e in calls[(direction, "cuda")]._entries.values()
    ]
    assert entries and all(e.graph is not None for e in entries)


def test_threads_replaying_one_cuda_graph_each_get_their_own_gradients():
    assert_threads_get_their_own_gradients("fused", "cuda")


def test_cuda_graphs_dropped_from_a_full_cache_leave_every_step_right(monkeypatch):
    monkeypatch.setattr(graphs, "_kept", OrderedDict())
    monkeypatch.setattr(graphs.CallGraphs, "limit_count", 2)
    # Three lengths round robin through two graphs (two layers, two directions): graphs
    # are captured, dropped, captured again, until the loops stop making new ones.
    assert_steps_match_reference("fused", zoo.get("mgu"), "cuda", [3, 4, 5] * 5)
    calls = fused_backend(zoo.get("mgu")).core._graphs.values()
    assert all(call._recaptured == 3 for call in calls)


def test_a_fused_layer_captured_in_the_callers_own_graph_trains_as_it_does_eagerly():
    # make_graphed_callables captures the layer's forward and backward into graphs of its
    # own; the layer's calls then run inside them rather than as graphs of their own.
    torch.manual_seed(0)
    eager = CellRNN(zoo.get("mut1"), 3, 8, backend="fused").cuda().double()
    graphed = CellRNN(zoo.get("mut1"), 3, 8, backend="fused").cuda().double()
    graphed.load_state_dict(eager.state_dict())
    x = torch.randn(6, 4, 3, device="cuda", dtype=torch.float64, requires_grad=True)
    graphed = torch.cuda.make_graphed_callables(graphed, (x,))
    for _ in range(3):
        x = torch.randn(6, 4, 3, device="cuda", dtype=torch.float64, requires_grad=True)
        outs = []
        for model in (eager, graphed):
            model.zero_grad()
            out, state = model(x)
            dx, *dw = torch.autograd.grad(
                out.square().sum() + state[0].sum(), [x, *model.parameters()]
            )
            outs.append([out, dx, *dw])
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)

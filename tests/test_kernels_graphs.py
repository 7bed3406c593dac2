"""CallGraphs: a fused layer's forward and backward calls on graph-owned twin inputs.

On the CPU the graph itself is not captured (``capture=False``), but everything around
it is the same: the twin's layout, copying in, running on the twin, copying the outputs
out. ``tests/test_kernels_cuda.py`` runs the same checks with real CUDA graphs.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from test_kernels_workspace import assert_each_thread_gets_its_own_gradients

from optuna_rnn import Cell, CellRNN, zoo
from optuna_rnn.kernels import graphs
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.graphs import CallGraphs, kept_nbytes, layout, twin
from optuna_rnn.kernels.layer import FusedLayer
from optuna_rnn.nn.backends import BACKENDS, register_backend


def _buffers(x_offset: int) -> dict[str, torch.Tensor]:
    xw = torch.randn(4, 3, 10)
    big = torch.randn(50, 3, 2)
    return {
        "xw": xw,
        "Y0": xw.narrow(2, 5, 5),  # a folded product's block
        "W0": torch.randn(5, 7).t(),
        "x": big[x_offset : x_offset + 4],  # a slice of a larger input
    }


def test_a_twin_keeps_shapes_strides_and_aliasing_and_nothing_more():
    buffers = _buffers(x_offset=9)
    got = twin(buffers)
    for name, t in buffers.items():
        assert got[name].shape == t.shape and got[name].stride() == t.stride(), name
        assert got[name].untyped_storage().data_ptr() != t.untyped_storage().data_ptr(), name
    assert got["Y0"].untyped_storage().data_ptr() == got["xw"].untyped_storage().data_ptr()
    assert got["Y0"].storage_offset() == 5
    got["xw"].zero_()
    got["Y0"].fill_(1)
    assert got["xw"].sum() == 4 * 3 * 5  # Y0 is the last 5 columns of xw
    assert got["x"].untyped_storage().nbytes() == 4 * 3 * 2 * 4  # the slice, not its base


def test_layout_ignores_where_memory_is_but_not_how_buffers_share_it():
    assert layout(_buffers(0)) == layout(_buffers(30))
    apart = _buffers(0)
    apart["Y0"] = apart["Y0"].clone()
    assert layout(apart) != layout(_buffers(0))
    wider = _buffers(0)
    wider["W0"] = torch.randn(5, 8).t()
    assert layout(wider) != layout(_buffers(0))


@pytest.fixture
def graph_backend():
    """The fused plan with torch pointwise ops, its calls through CallGraphs; one
    compiled cell per cell, as ``fused_backend`` keeps them."""
    cores: dict[str, FusedCell] = {}

    def make(cell):
        return FusedLayer(
            cores.setdefault(str(cell), FusedCell(cell, pointwise="torch", graphs=True))
        )

    register_backend("graphs-test", make)
    yield "graphs-test", cores
    del BACKENDS["graphs-test"]


def assert_steps_match_reference(backend: str, cell: Cell, device: str, lengths: list[int]) -> None:
    """Train ``backend`` and the reference side by side, one sequence length per step:
    every output, final state and gradient agrees at every step."""
    torch.manual_seed(0)
    kw = {"num_layers": 2, "init_scale": 0.7}
    fast = CellRNN(cell, 3, 8, backend=backend, **kw).to(device, torch.float64)
    ref = CellRNN(cell, 3, 8, backend="reference", **kw).to(device, torch.float64)
    ref.load_state_dict(fast.state_dict())
    for T in lengths:
        x = torch.randn(T, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
        version = x._version
        got, want = [], []
        for model, into in ((fast, got), (ref, want)):
            model.zero_grad()
            out, state = model(x)
            dx, *dw = torch.autograd.grad(
                out.square().sum() + state[-1].sum(), [x, *model.parameters()]
            )
            into += [out, *state, dx, *dw]
        assert x._version == version  # the input was only read
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


# Between them: a folded product (lstm), two rounds (gru_torch), raw x (mut1), a state the
# backward does not read (lstm_f's c), three states (fgr), a map of a constant (the last).
CELL_IDS = ["lstm", "gru_torch", "mut1", "lstm_f", "fgr", "pre"]
CELLS = [zoo.get(n) for n in CELL_IDS[:-1]] + [Cell.parse("h' = relu(W b1 + U h + V x)")]


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_steps_through_twin_buffers_match_the_reference(cell, graph_backend):
    backend, cores = graph_backend
    # Length 5 is first seen, then gets a twin; 7 is seen once; 5 again runs on its twin.
    assert_steps_match_reference(backend, cell, "cpu", [5, 5, 5, 7, 5])
    (core,) = cores.values()
    for direction in (False, True):
        # Each layer's layout at length 5; 7 came once.
        assert len(core._graphs[(direction, "cpu")]._entries) == 2


def assert_threads_get_their_own_gradients(backend: str, device: str) -> None:
    """Four threads train four models of one cell and shape at once (as trials of
    ``study.optimize(n_jobs=4)``): each gets the gradients it gets alone."""
    torch.manual_seed(0)
    # Weights differ; one cell and one layout, so every thread goes through one twin.
    models = [
        CellRNN(zoo.get("mut1"), 4, 8, backend=backend).to(device, torch.float64) for _ in range(4)
    ]
    xs = [[torch.randn(6, 3, 4, dtype=torch.float64, device=device)] for _ in range(4)]
    assert_each_thread_gets_its_own_gradients(models, xs, rounds=6)


def test_threads_sharing_one_twin_each_get_their_own_gradients(graph_backend):
    assert_threads_get_their_own_gradients(graph_backend[0], "cpu")


@pytest.fixture
def empty_cache(monkeypatch):
    """A cache of at most two twins, empty at the start, whatever other tests left."""
    monkeypatch.setattr(graphs, "_kept", OrderedDict())
    monkeypatch.setattr(CallGraphs, "limit_count", 2)


def _scaled(inputs, factor):
    return {"y": inputs["x"] * factor, "first": inputs["x"][:1]}


def _call(calls: CallGraphs, n: int, factor: float = 2.0) -> dict[str, torch.Tensor]:
    x = torch.randn(n)
    out = calls({"x": x}, factor)
    assert torch.equal(out["y"], x * factor) and torch.equal(out["first"], x[:1])
    return out


def test_outputs_come_out_as_copies_and_options_pick_their_own_twin(empty_cache):
    calls = CallGraphs(_scaled, capture=False)
    for factor in (2.0, 3.0, 2.0, 3.0):  # each option seen, then twinned
        out = _call(calls, 4, factor)
    statics = [e.static["x"].untyped_storage().data_ptr() for e in calls._entries.values()]
    assert len(statics) == 2
    assert (
        out["first"].untyped_storage().data_ptr() not in statics
    )  # not a view of the twin's input


def test_the_cache_keeps_the_most_recent_twins_of_all_calls(empty_cache):
    first, second = CallGraphs(_scaled, capture=False), CallGraphs(_scaled, capture=False)
    for n in (3, 4, 3, 4):  # each length seen, then twinned
        _call(first, n)
    assert len(first._entries) == 2 and kept_nbytes() == (3 + 4) * 4
    _call(second, 5)
    _call(second, 5)  # a third twin, in another instance: the least recently used goes
    assert [e.static["x"].numel() for e in first._entries.values()] == [4]
    assert len(second._entries) == 1 and len(graphs._kept) == 2
    assert kept_nbytes() == (4 + 5) * 4


@pytest.mark.parametrize("limit", [("limit_bytes", 60), ("limit_count", 0)])
def test_a_twin_over_a_limit_is_not_kept(limit, empty_cache, monkeypatch):
    monkeypatch.setattr(CallGraphs, *limit)
    calls = CallGraphs(_scaled, capture=False)
    for _ in range(3):
        _call(calls, 20)  # 20 floats in: 80 bytes
    assert not calls._entries and not graphs._kept


def test_calls_whose_twins_keep_being_dropped_stop_making_them(empty_cache):
    calls = CallGraphs(_scaled, capture=False)
    for _ in range(10):  # three lengths round robin through a cache of two
        for n in (3, 4, 5):
            _call(calls, n)
    assert calls._recaptured == 3  # one more than the cache holds, then no more
    kept = dict(calls._entries)
    for n in (3, 4, 5):
        _call(calls, n)
    assert calls._entries == kept

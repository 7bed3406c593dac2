"""The fused backend's scratch pool: reuse, its bound, and buffers never shared by two
live graphs."""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import Callable

import pytest
import torch

from optuna_rnn import CellRNN, zoo
from optuna_rnn.kernels.workspace import Workspace, scratch


def test_a_returned_buffer_is_handed_out_again_for_the_same_shape():
    pool = Workspace(limit_bytes=1 << 20)
    a = pool.take((4, 5), torch.float32)
    pool.give([a])
    assert pool.take((2, 10), torch.float32).data_ptr() != a.data_ptr()  # keyed by shape
    assert pool.take((4, 5), torch.float64).data_ptr() != a.data_ptr()  # and dtype
    b = pool.take((4, 5), torch.float32)
    assert b.data_ptr() == a.data_ptr() and b.shape == (4, 5) and b.is_contiguous()
    assert pool.held_bytes == 0


def test_the_least_recently_returned_go_first_past_the_limit():
    pool = Workspace(limit_bytes=3 * 400)
    bufs = [pool.take((100,), torch.float32) for _ in range(4)]
    pool.give(bufs)
    assert pool.held_bytes == 3 * 400
    again = {pool.take((100,), torch.float32).data_ptr() for _ in range(3)}
    assert again == {b.data_ptr() for b in bufs[1:]}
    assert pool.held_bytes == 0


def test_threads_never_receive_the_same_buffer():
    pool = Workspace(limit_bytes=64 << 20)
    pool.give([torch.empty(256) for _ in range(8)])
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            t = pool.take((256,), torch.float32)
            with lock:
                assert t.data_ptr() not in seen
                seen.append(t.data_ptr())
            with lock:
                seen.remove(t.data_ptr())
            pool.give([t])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.held_bytes <= 64 << 20


def _finishes(fn: Callable[[], None], seconds: float = 120.0) -> bool:
    """Whether ``fn`` returns within ``seconds`` on a daemon thread (a deadlock leaves it
    waiting there for good, and the test still ends); its exception is raised here."""
    errors: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(err)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(seconds)
    if errors:
        raise errors[0]
    return finished


class _Cyclic:
    """Garbage that only the cyclic collector frees."""

    def __init__(self) -> None:
        self.me = self


def test_a_finalizer_run_by_the_collector_inside_the_pools_own_call_does_not_deadlock():
    # The collector runs finalizers inside whatever allocation triggers it, such as one
    # made while ``give`` walks its argument (the fused backend passes a generator); here
    # the finalizer hands buffers back to the very pool that is taking these.
    pool = Workspace(limit_bytes=1 << 16)

    def buffers():
        weakref.finalize(_Cyclic(), pool.give, [torch.empty(16)])
        gc.collect()  # what a collection triggered by any allocation here would do
        yield torch.empty(16)

    def churn() -> None:
        for _ in range(3):
            pool.give(buffers())

    assert _finishes(churn)
    assert pool.held_bytes == 6 * 16 * 4  # every buffer, the finalizers' ones included
    assert pool.take((16,), torch.float32).shape == (16,)


def test_training_whose_graphs_die_in_the_cyclic_collector_does_not_deadlock():
    # The reproducer, shorter: graphs kept alive by a reference cycle are freed by
    # the collector, whose finalizers return saved buffers while a step holds the pool.
    m = CellRNN(zoo.get("mut1"), 8, 32, backend="fused")

    def train() -> None:
        old = gc.get_threshold()
        gc.set_threshold(50, 1, 1)
        try:
            for i in range(300):
                y, _ = m(torch.randn(10, 4, 8))
                cycle: list = [y]
                cycle.append(cycle)
                if i % 7 == 0:
                    y.sum().backward()
        finally:
            gc.set_threshold(*old)

    assert _finishes(train)


def _pair(name: str, hidden: int = 16):
    torch.manual_seed(0)
    fused = CellRNN(zoo.get(name), 8, hidden, num_layers=2, backend="fused").double()
    ref = CellRNN(zoo.get(name), 8, hidden, num_layers=2, backend="reference").double()
    ref.load_state_dict(fused.state_dict())
    return fused, ref


@pytest.mark.parametrize("name", ["lstm", "mut1", "gru"])
def test_two_graphs_alive_at_once_keep_their_own_buffers(name):
    fused, ref = _pair(name)
    xs = [torch.randn(7, 5, 8, dtype=torch.float64) for _ in range(3)]
    outs = [fused(x)[0] for x in xs]  # three graphs, none backpropagated yet
    for out in reversed(outs):
        (out * out).sum().backward()
    got = [p.grad.clone() for p in fused.parameters()]
    for x in xs:
        out = ref(x)[0]
        (out * out).sum().backward()
    for g, p in zip(got, ref.parameters()):
        torch.testing.assert_close(g, p.grad)


def test_a_retained_graph_backpropagates_twice_alike():
    fused, _ = _pair("lstm")
    params = list(fused.parameters())
    x = torch.randn(7, 5, 8, dtype=torch.float64)
    out = fused(x)[0]
    first = torch.autograd.grad(out.square().sum(), params, retain_graph=True)
    other = fused(torch.randn_like(x))[0]  # the same sizes: takes what the pool holds
    other.sum().backward()
    del other
    with torch.no_grad():
        fused(torch.randn_like(x))  # no graph kept: its scratch returns at once
    second = torch.autograd.grad(out.square().sum(), params)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_scratch_is_returned_once_the_graph_is_gone():
    fused, _ = _pair("mut1", hidden=40)
    x = torch.randn(9, 6, 8, dtype=torch.float64)
    out = fused(x)[0]
    out.sum().backward()
    del out
    held = scratch.held_bytes
    out = fused(x)[0]  # the same sizes again: served from the pool
    assert scratch.held_bytes < held
    out.sum().backward()
    del out
    assert scratch.held_bytes == held


@pytest.mark.parametrize("how", ["no_grad", "frozen"])
def test_a_call_with_nothing_to_differentiate_keeps_nothing_and_computes_the_same(how):
    fused, ref = _pair("mut1", hidden=40)
    x = torch.randn(9, 6, 8, dtype=torch.float64)
    with_graph, with_graph_state = fused(x.requires_grad_())
    x = x.detach()
    if how == "frozen":  # gradients on, but no input or parameter needs one
        fused.requires_grad_(False)
    with torch.no_grad() if how == "no_grad" else contextlib.nullcontext():
        held = [scratch.held_bytes]
        for _ in range(2):
            out, state = fused(x)
            held.append(scratch.held_bytes)
    assert out.grad_fn is None and not out.requires_grad
    assert held[0] <= held[1] == held[2]  # each call gave back all the scratch it took
    assert torch.equal(out, with_graph.detach())
    for a, b in zip(state, with_graph_state):
        assert torch.equal(a, b.detach())
    torch.testing.assert_close(out, ref(x)[0].detach())


def assert_each_thread_gets_its_own_gradients(
    models: list, inputs: list[list[torch.Tensor]], rounds: int
) -> None:
    """Thread ``i`` trains ``models[i]`` on ``inputs[i]`` ``rounds`` times over, all threads at
    once: every step's gradients are those the same step gets alone."""

    def grads(model, x):
        model.zero_grad()
        out, state = model(x)
        (out.square().sum() + state[0].sum()).backward()
        return [p.grad.clone() for p in model.parameters()]

    expected = [[grads(m, x) for x in seq] for m, seq in zip(models, inputs)]
    got: list[list | None] = [None] * len(models)

    def work(i: int) -> None:
        got[i] = [grads(models[i], x) for _ in range(rounds) for x in inputs[i]]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, seq in enumerate(inputs):
        assert got[i] is not None
        for k, g in enumerate(got[i]):
            for a, b in zip(g, expected[i][k % len(seq)]):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch,hidden", [(4, 16), (16, 160)])  # one C thread a call; OpenMP's
def test_threads_training_one_cell_at_once_each_get_their_own_gradients(batch, hidden):
    # As trials do under ``study.optimize(n_jobs=...)``: every thread's model shares the one
    # compiled cell, its schedules (rebuilt as longer sequences come) and the scratch pool.
    torch.manual_seed(0)
    models = [
        CellRNN(zoo.get("mut1"), 8, hidden, backend="fused").double() for _ in range(4)
    ]  # weights differ
    xs = [
        [torch.randn(3 + 4 * i + k, batch, 8, dtype=torch.float64) for k in range(3)]
        for i in range(4)
    ]
    assert_each_thread_gets_its_own_gradients(models, xs, rounds=5)

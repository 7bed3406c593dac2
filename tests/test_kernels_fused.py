"""The fused backend against the reference: outputs and every gradient, zoo and mutants."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import optuna_rnn
from optuna_rnn import CellRNN, mutate, zoo
from optuna_rnn.kernels import make_plan
from optuna_rnn.kernels.build import cache_dir, compiler, load_library
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.layer import FusedLayer
from optuna_rnn.nn.backends import BACKENDS, register_backend

TOL = {torch.float64: 1e-6, torch.float32: 1e-4}


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory):
    """One kernel cache for the whole session (and all xdist workers), not ~/.cache."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    old = os.environ.get("OPTUNA_RNN_KERNEL_CACHE")
    os.environ["OPTUNA_RNN_KERNEL_CACHE"] = str(root / "optuna-rnn-kernels")
    yield
    if old is None:
        del os.environ["OPTUNA_RNN_KERNEL_CACHE"]
    else:
        os.environ["OPTUNA_RNN_KERNEL_CACHE"] = old


def _rel(a: torch.Tensor, b: torch.Tensor, floor: float) -> float:
    """Norm-wise relative error in float64, against at least ``floor``: a gradient that
    cancels to exactly zero in one backend is rounding noise in the other, so tensors far
    smaller than the largest one compared are measured at that scale."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / max(b.norm().item(), floor)).item()


def _run(rnn: CellRNN, x: torch.Tensor, states, weights) -> list[torch.Tensor]:
    """Output, final states and the gradients of a random linear loss w.r.t. everything."""
    arg = None if states is None else (states if len(states) > 1 else states[0])
    out, final = rnn(x, arg)
    final = final if isinstance(final, tuple) else (final,)
    loss = (out * weights[0]).sum() + sum((f * w).sum() for f, w in zip(final, weights[1:]))
    wrt = [x, *(states or ()), *rnn.parameters()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)  # a state may go unread
    return [out, *final, *(torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads))]


def assert_fused_matches_reference(
    cell: optuna_rnn.Cell,
    *,
    dtype: torch.dtype,
    num_layers: int,
    batch_first: bool,
    initial: bool,
    seed: int = 0,
    input_size: int = 3,
    hidden: int = 6,
    device: str = "cpu",
    backend: str = "fused",
    batch: int = 3,
) -> None:
    """``backend`` against the reference: outputs, final states, every gradient."""
    torch.manual_seed(seed)
    kw = {"num_layers": num_layers, "batch_first": batch_first, "init_scale": 0.7}
    fused = CellRNN(cell, input_size, hidden, backend=backend, **kw).to(device, dtype)
    ref = CellRNN(cell, input_size, hidden, backend="reference", **kw).to(device, dtype)
    ref.load_state_dict(fused.state_dict())
    T, B = 5, batch
    new = {"dtype": dtype, "device": device}
    shape = (B, T, input_size) if batch_first else (T, B, input_size)
    x = torch.randn(shape, **new, requires_grad=True)
    states = (
        tuple(torch.randn(num_layers, B, hidden, **new, requires_grad=True) for _ in cell.states)
        if initial
        else None
    )
    out_shape = (B, T, hidden) if batch_first else (T, B, hidden)
    weights = [torch.randn(out_shape, **new)] + [
        torch.randn(num_layers, B, hidden, **new) for _ in cell.states
    ]
    want = _run(ref, x, states, weights)
    if not all(w.isfinite().all() for w in want):
        pytest.skip("this mutant overflows in the reference itself")
    got = _run(fused, x, states, weights)
    names = ["output", *(f"final {s}" for s in cell.states), "d input"]
    names += [f"d initial {s}" for s in (cell.states if initial else ())]
    names += [f"d {n}" for n, _ in ref.named_parameters()]
    assert len(got) == len(want) == len(names)
    floor = max(1e-2 * max(w.double().norm().item() for w in want), 1e-30)
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, name
        err = _rel(a, b, floor)
        assert err <= TOL[dtype], f"{name}: relative error {err:.2e}\n{cell}"


# Every option is covered for every cell without running the whole cross product.
CONFIGS = [
    {"dtype": torch.float64, "num_layers": 1, "batch_first": False, "initial": False},
    {"dtype": torch.float64, "num_layers": 3, "batch_first": True, "initial": True},
    {"dtype": torch.float32, "num_layers": 3, "batch_first": False, "initial": True},
    {"dtype": torch.float32, "num_layers": 1, "batch_first": True, "initial": False},
]


@pytest.mark.parametrize(
    "config",
    CONFIGS,
    ids=lambda c: (
        f"{str(c['dtype'])[6:]}-L{c['num_layers']}"
        f"-{'bf' if c['batch_first'] else 'tf'}-{'init' if c['initial'] else 'zero'}"
    ),
)
@pytest.mark.parametrize("name", zoo.names())
def test_zoo_cell(name, config):
    assert_fused_matches_reference(zoo.get(name), **config)


def mutants(n: int, seed: int) -> list[optuna_rnn.Cell]:
    rng = np.random.default_rng(seed)
    names = zoo.names()
    return [mutate(zoo.get(names[rng.integers(len(names))]), rng) for _ in range(n)]


@pytest.mark.parametrize(
    "k, cell",
    list(enumerate(mutants(40, seed=2015))),
    ids=lambda v: str(v) if isinstance(v, int) else "",
)
def test_mutant(k, cell):
    config = CONFIGS[k % len(CONFIGS)]
    assert_fused_matches_reference(cell, seed=k, **config)


@pytest.mark.slow
@pytest.mark.parametrize(
    "k, cell",
    list(enumerate(mutants(210, seed=7))),
    ids=lambda v: str(v) if isinstance(v, int) else "",
)
def test_many_mutants_every_config(k, cell):
    """At least 200 mutants once the few that overflow in the reference are skipped."""
    for config in CONFIGS:
        assert_fused_matches_reference(cell, seed=k, **config)


@pytest.fixture
def torch_threads():
    """Set torch's thread count for one test, then restore it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["lstm", "gru", "mut1"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("threads", [2, 3])
def test_batches_large_enough_to_split_across_threads(name, dtype, threads, torch_threads):
    """B * H >= 2048: each time loop runs on blocks of batch rows, one per OpenMP thread,
    and the blocks need not be equal (23 rows)."""
    torch_threads(threads)
    assert_fused_matches_reference(
        zoo.get(name),
        dtype=dtype,
        num_layers=2,
        batch_first=False,
        initial=True,
        batch=23,
        hidden=96,
        input_size=96,
    )


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
def test_kernels_share_torchs_openmp_runtime():
    """Two OpenMP runtimes would each keep a thread pool and fight over the cores."""
    rnn = CellRNN(zoo.get("gru"), 8, 96, backend="fused")
    out, _ = rnn(torch.randn(3, 24, 8))
    out.sum().backward()
    with open("/proc/self/maps") as f:
        runtimes = {
            line.split()[-1]
            for line in f
            if "libgomp" in line or "libomp" in line or "libiomp" in line
        }
    assert len(runtimes) <= 1, runtimes


def _loops_in_c(monkeypatch) -> list[bool]:
    """Record whether each time loop ran as one C call."""
    ran: list[bool] = []
    run_c = FusedCell._run_c

    def recording(self, *args):
        ran.append(run_c(self, *args))
        return ran[-1]

    monkeypatch.setattr(FusedCell, "_run_c", recording)
    return ran


@pytest.mark.skipif(shutil.which(compiler()) is None, reason="no C compiler")
def test_each_time_loop_is_one_c_call(monkeypatch):
    ran = _loops_in_c(monkeypatch)
    assert_fused_matches_reference(
        zoo.get("gru"), dtype=torch.float64, num_layers=2, batch_first=True, initial=False
    )
    assert ran and all(ran)


@pytest.mark.skipif(shutil.which(compiler()) is None, reason="no C compiler")
def test_a_time_loop_binds_only_the_buffers_it_uses():
    """A schedule built on a call that held a buffer no step reads still runs a later
    call of the same layout without it (it raised KeyError: every name was bound)."""
    from optuna_rnn.kernels import passes
    from optuna_rnn.kernels.layer import fused_backend

    cell, T, B, H = zoo.get("gru"), 5, 3, 8
    torch.manual_seed(0)
    module = CellRNN(cell, H, H, backend="fused")
    core, layer = fused_backend(cell).core, module.layers[0]
    stacks = core.stacks([layer.weight[n].detach() for n in core.map_names])
    biases = [layer.bias[n].detach() for n in core.biases]
    x, taken = torch.randn(T, B, H), []
    given = passes.given_buffers(core, stacks[1], (), biases)
    kept = passes._forward(core, x, stacks[0], [torch.zeros(B, H)], given, taken)
    kept = {n: b for n, b in kept.items() if n in core.kept or n in core.saved}
    kept["not read by any step"] = torch.zeros(3)
    needs = (True, False, *[True] * (len(core.map_names) + len(biases)))
    passes.gradients(core, kept, x, stacks, torch.randn(T, B, H), [None], needs, taken)
    x.requires_grad_()
    out, _ = module(x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.fixture
def torch_pointwise():
    """A backend running the fused plan's pointwise programs as torch ops."""
    register_backend(
        "fused-torch-test", lambda cell: FusedLayer(FusedCell(cell, pointwise="torch"))
    )
    yield "fused-torch-test"
    del BACKENDS["fused-torch-test"]


@pytest.mark.parametrize("name", ["lstm", "gru", "mut2"])
def test_with_torch_pointwise_the_loop_runs_in_python(name, torch_pointwise, monkeypatch):
    ran = _loops_in_c(monkeypatch)
    assert_fused_matches_reference(
        zoo.get(name),
        dtype=torch.float64,
        num_layers=2,
        batch_first=False,
        initial=True,
        backend=torch_pointwise,
    )
    assert ran and not any(ran)


def test_state_carry_across_chunks_matches_one_pass():
    torch.manual_seed(0)
    cell = zoo.get("lstm")
    rnn = CellRNN(cell, 3, 6, num_layers=2, backend="fused").double()
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    full, _ = rnn(x)
    first, state = rnn(x[:4])
    second, _ = rnn(x[4:], tuple(s.detach() for s in state))
    torch.testing.assert_close(torch.cat([first, second]), full)


@pytest.mark.parametrize("uses", ["output", "final states", "one final state"])
def test_a_loss_that_reads_only_some_outputs_gets_the_reference_gradients(uses):
    # The outputs the loss leaves unread get no gradient at all (None, not zeros).
    torch.manual_seed(0)
    cell = zoo.get("lstm")
    fused = CellRNN(cell, 3, 6, num_layers=2, backend="fused").double()
    ref = CellRNN(cell, 3, 6, num_layers=2, backend="reference").double()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = tuple(torch.randn(2, 2, 6, dtype=torch.float64, requires_grad=True) for _ in cell.states)
    grads = []
    for rnn in (fused, ref):
        out, (h, c) = rnn(x, h0)
        loss = {
            "output": out.square().sum(),
            "final states": (h * c).sum(),
            "one final state": c.sum(),
        }[uses]
        grads.append(torch.autograd.grad(loss, [x, *h0, *rnn.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_dropout_between_layers_matches_reference():
    cell = zoo.get("gru")
    fused = CellRNN(cell, 3, 6, num_layers=3, dropout=0.4, backend="fused").double().train()
    ref = CellRNN(cell, 3, 6, num_layers=3, dropout=0.4, backend="reference").double().train()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(11)
    a = fused(x)[0]
    torch.manual_seed(11)
    b = ref(x)[0]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "name, expected", [("mut3", "fused"), ("gru_torch", "fused"), ("lstm", "native")]
)
def test_auto_on_the_cpu_picks_the_faster_backend_and_every_backend_shares_the_layout(
    name, expected
):
    cell = zoo.get(name)
    auto = CellRNN(cell, 4, 6)
    assert auto.backend == "auto"
    twin = CellRNN(cell, 4, 6, backend=expected)
    ref = CellRNN(cell, 4, 6, backend="reference")
    assert ref.state_dict().keys() == auto.state_dict().keys() == twin.state_dict().keys()
    assert all(v.shape == auto.state_dict()[k].shape for k, v in ref.state_dict().items())
    twin.load_state_dict(auto.state_dict())
    x = torch.randn(5, 2, 4)
    assert torch.equal(auto(x)[0], twin(x)[0])


@pytest.mark.parametrize("name", ["mut3", "gru_torch"])
def test_auto_on_the_cpu_runs_one_step_sequences_on_the_reference(name):
    """One step at a time (sampling) does not pay back the fused call's fixed cost."""
    cell = zoo.get(name)
    auto = CellRNN(cell, 4, 6)
    ref = CellRNN(cell, 4, 6, backend="reference")
    fused = CellRNN(cell, 4, 6, backend="fused")
    ref.load_state_dict(auto.state_dict())
    fused.load_state_dict(auto.state_dict())
    x, h = torch.randn(1, 3, 4), torch.randn(1, 3, 6)
    state = h if len(cell.states) == 1 else (h, torch.randn(1, 3, 6))
    assert torch.equal(auto(x, state)[0], ref(x, state)[0])
    longer = torch.randn(2, 3, 4)
    assert torch.equal(auto(longer, state)[0], fused(longer, state)[0])


def test_plan_products_and_stages():
    lstm = make_plan(zoo.get("lstm"))
    assert len(lstm.x_linears) == 4
    assert [(p.round, len(p.linears)) for p in lstm.products] == [(1, 4)]
    assert [len(s) > 0 for s in lstm.stages] == [False, True]  # one fused kernel per step
    gru = make_plan(zoo.get("gru"))
    # Whh (r * h) reads an intermediate: a second round, a second product and kernel.
    assert [(p.round, len(p.linears)) for p in gru.products] == [(1, 2), (2, 1)]
    assert [len(s) > 0 for s in gru.stages] == [False, True, True]
    assert make_plan(zoo.get("mut1")).reads_x


@pytest.mark.parametrize(
    "text, loop_maps",
    [
        ("h' = relu(W b1 + U h + V x)", ["U"]),
        ("h' = tanh(W tanh(A b1 + b2) + U h) * (V x + K b3)", ["U"]),
        ("h' = sigm(W b1) * h + V x", []),  # a constant gate: no product left in the loop
    ],
)
def test_maps_of_constants_run_once_before_the_loop(text, loop_maps):
    cell = optuna_rnn.Cell.parse(text)
    plan = make_plan(cell)
    assert plan.pre and [plan.nodes[i].name for p in plan.products for i in p.linears] == loop_maps
    for config in CONFIGS:
        assert_fused_matches_reference(cell, **config)


def test_products_summed_with_maps_of_x_fold_into_xw():
    lstm = make_plan(zoo.get("lstm"))
    assert lstm.xw_blocks == (0,)  # all four gates: Wx x + Wh h + b
    assert all(lstm.folded(i) for i in lstm.products[0].linears)
    assert not any(lstm.folded(i) for i in lstm.x_linears)
    # torch's GRU reads r * (Whn h + bhn): that map is not summed with a map of x.
    assert make_plan(zoo.get("gru_torch")).xw_blocks == (None,)
    # A folded map's value is in XW: the forward kernel reads one of the two.
    forward = FusedCell(zoo.get("lstm")).forward_programs[1]
    assert sum(loc[0] == "val" and loc[1] in lstm.x_linears for loc in forward.args) == 4
    assert not any(loc[0] == "val" and lstm.folded(loc[1]) for loc in forward.args)


def test_kernels_are_cached_on_disk_per_cell():
    cell = optuna_rnn.Cell.parse("h' = tanh(Wx x + Wh (h * sigm(Wg h + bg)) + b)")
    core = FusedCell(cell)
    source = core.source("f64")
    assert core.library("f64") is not None
    cached = list(cache_dir().glob("cell_*.so"))
    assert cached and all(p.parent == cache_dir() for p in cached)
    again = FusedCell(optuna_rnn.Cell.parse("h' = tanh(A x + B (h * sigm(C h + b0)) + b)"))
    assert again.source("f64") == source  # another spelling, the same kernel


def test_concurrent_builds_in_two_processes_do_not_corrupt_the_cache(tmp_path):
    script = textwrap.dedent(
        """
        import sys, torch
        from optuna_rnn import zoo
        from optuna_rnn.kernels.fused import FusedCell
        core = FusedCell(zoo.get("ugrnn"))
        assert core.library("f32") is not None
        print("ok")
        """
    )
    env = dict(os.environ, OPTUNA_RNN_KERNEL_CACHE=str(tmp_path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    libs = list(tmp_path.glob("cell_*.so"))
    assert len(libs) == 1 and not list(tmp_path.glob(".build-*"))
    os.environ["OPTUNA_RNN_KERNEL_CACHE"], old = (
        str(tmp_path),
        os.environ["OPTUNA_RNN_KERNEL_CACHE"],
    )
    try:
        assert load_library(FusedCell(zoo.get("ugrnn")).source("f32")) is not None
    finally:
        os.environ["OPTUNA_RNN_KERNEL_CACHE"] = old


@pytest.mark.parametrize("compiler", ["/nonexistent/cc", "false"])
def test_without_a_working_compiler_falls_back_to_torch_with_one_warning(
    compiler, monkeypatch, tmp_path
):
    monkeypatch.setenv("CC", compiler)
    monkeypatch.setenv("OPTUNA_RNN_KERNEL_CACHE", str(tmp_path))
    cell = optuna_rnn.Cell.parse(
        "z = sigm(Wz x + Uz h + bz)\nh' = z * h + (1 - z) * tanh(Wx x + Uh (z * h))"
    )
    with pytest.warns(RuntimeWarning, match="falling back|no C compiler") as record:
        libraries = [FusedCell(c).library("f64") for c in (cell, zoo.get("mgu"))]
    assert libraries == [None, None]
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert_fused_matches_reference(
        cell, dtype=torch.float64, num_layers=2, batch_first=False, initial=True
    )


@pytest.mark.parametrize(
    "frozen", ["x maps", "x maps but the first", "one of each stack", "biases"]
)
@pytest.mark.parametrize("name", ["lstm", "gru", "mut1"])
def test_frozen_weights_get_no_gradient_and_the_others_match_the_reference(name, frozen):
    # The fused layer takes every map's weight apart and returns each map's gradient as a
    # view of its stack's: frozen maps must get none, the others their own rows.
    torch.manual_seed(0)
    cell = zoo.get(name)
    core = FusedCell(cell)
    picked = {
        "x maps": set(core.x_names),
        "x maps but the first": set(core.x_names[1:]),
        "one of each stack": {names[0] for names in (core.x_names, *core.product_names) if names},
        "biases": set(core.biases),
    }[frozen]
    fused = CellRNN(cell, 3, 6, backend="fused").double()
    ref = CellRNN(cell, 3, 6, backend="reference").double()
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for model in (fused, ref):
        for key, p in model.named_parameters():
            p.requires_grad_(key.rsplit(".", 1)[-1] not in picked)
        out, _ = model(x)
        (dx,) = torch.autograd.grad(out.square().sum(), [x], retain_graph=True)
        out.square().sum().backward()
        grads.append({"x": dx, **{key: p.grad for key, p in model.named_parameters()}})
    assert picked and all(grads[0][k] is None for k in grads[0] if k.rsplit(".", 1)[-1] in picked)
    for key, g in grads[0].items():
        if key.rsplit(".", 1)[-1] not in picked:
            torch.testing.assert_close(g, grads[1][key], rtol=1e-10, atol=1e-10)


def test_a_bound_layer_refuses_a_cell_with_pre_leaves():
    """Its loop reads the prologue's values, which a call computes from the weights: a
    layer bound once cannot hold them (the trainer's step leaves such cells to autograd)."""
    from optuna_rnn.kernels.bound import BoundLayer
    from optuna_rnn.kernels.layer import fused_backend

    cell = optuna_rnn.Cell.parse("h' = relu(W b1 + U h + V x)")
    core, H = fused_backend(cell).core, 4
    stacks = core.stacks([torch.zeros(H, H) for _ in core.map_names])
    with pytest.raises(ValueError, match="pre leaves"):
        BoundLayer(
            core,
            T=2,
            B=1,
            H=H,
            x_width=H,
            stacks=stacks,
            biases=[torch.zeros(H)],
            needs=(True,) * 8,
            out={},
            like=torch.zeros(1),
        )

"""The fused layer as PyTorch custom operators: opcheck, torch.compile and torch.export."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from optuna_rnn import Cell, CellRNN, zoo
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.layer import fused_backend
from optuna_rnn.kernels.ops import fused_backward, fused_forward

# A folded product (lstm), two rounds (gru_torch), raw x (mut1), a map of a constant (the
# prologue's pre leaf), and a mutant of the zoo's gru.
CELL_IDS = ["lstm", "gru", "gru_torch", "mut1", "pre"]
CELLS = [zoo.get(n) for n in CELL_IDS[:-1]] + [Cell.parse("h' = relu(W b1 + U h + V x)")]


def _inputs(cell: Cell, seed: int = 0, dtype: torch.dtype = torch.float64):
    torch.manual_seed(seed)
    x = torch.randn(5, 3, 4, dtype=dtype, requires_grad=True)
    states = tuple(torch.randn(2, 3, 6, dtype=dtype, requires_grad=True) for _ in cell.states)
    return x, states[0] if len(states) == 1 else states


def _step(model: torch.nn.Module, x: torch.Tensor, state) -> list[torch.Tensor]:
    """Outputs, final states, and the gradients of a loss that reads them all w.r.t.
    the input, the initial states and every parameter."""
    out, final = model(x, state)
    finals = final if isinstance(final, tuple) else (final,)
    loss = out.square().sum() + sum((f * f.detach().sin()).sum() for f in finals)
    states = state if isinstance(state, tuple) else (state,)
    grads = torch.autograd.grad(loss, [x, *states, *model.parameters()], allow_unused=True)
    return [out, *finals, *grads]


def _layer_args(cell: Cell, keep: bool):
    """Arguments of one fused layer's forward operator, as CellRNN passes them (the
    input as wide as the state: no projection)."""
    torch.manual_seed(1)
    rnn = CellRNN(cell, 6, 6, backend="fused").double()
    core = fused_backend(cell).core
    params = rnn.layers[0].params
    pres = fused_backend(cell)._prologue(params, torch.zeros(1, 3, 6, dtype=torch.float64), 6)
    x = torch.randn(5, 3, 6, dtype=torch.float64, requires_grad=keep)
    states = [torch.randn(3, 6, dtype=torch.float64, requires_grad=keep) for _ in cell.states]
    maps = [params.weights[n] for n in core.map_names]
    biases = [params.biases[n] for n in core.biases]
    return core, (
        core.key,
        x,
        states,
        maps,
        [p.detach().requires_grad_(keep) for p in pres],
        biases,
        keep,
    )


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_the_operators_pass_opcheck(cell):
    core, args = _layer_args(cell, keep=True)
    torch.library.opcheck(fused_forward, args)
    outputs = fused_forward(*args)
    n_saved, n_states = len(core.saved), len(cell.states)
    stacked = iter(outputs[n_saved + n_states :])
    stacks = [
        next(stacked) if j in core.stacked else args[3][a]
        for j, (a, _) in enumerate(core.stack_spans)
    ]
    T, B, H = 5, 3, 6
    dout = torch.randn(T, B, H, dtype=torch.float64)
    dfinals = [torch.randn(B, H, dtype=torch.float64)] + [None] * (n_states - 1)
    x, states, maps, pres, biases = args[1:6]
    needs = [True] * (1 + len(states) + len(maps) + len(pres) + len(biases))
    saved = [t.detach() for t in outputs[:n_saved]]
    torch.library.opcheck(
        fused_backward,
        (
            core.key,
            x.detach(),
            saved,
            [s.detach() for s in stacks],
            [p.detach() for p in pres],
            [b.detach() for b in biases],
            dout,
            dfinals,
            needs,
        ),
    )
    with torch.no_grad():
        _, args = _layer_args(cell, keep=False)
        torch.library.opcheck(fused_forward, args)


@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_gradients_through_the_operators_pass_gradcheck(cell):
    # Every input, the initial state through row 0 of state 0's buffer included.
    _, args = _layer_args(cell, keep=True)
    key, x, states, maps, pres, biases, _ = args
    inputs = (x, *states, *maps, *pres, *biases)
    n_states, n_maps, n_pres = len(states), len(maps), len(pres)

    def f(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, rest = flat[0], flat[1:]
        states, maps = list(rest[:n_states]), list(rest[n_states : n_states + n_maps])
        pres, biases = (
            list(rest[n_states + n_maps : n_states + n_maps + n_pres]),
            list(rest[n_states + n_maps + n_pres :]),
        )
        outputs = fused_forward(key, x, states, maps, pres, biases, True)
        return (outputs[0], *outputs[len(FusedCell.of(key).saved) :][:n_states])

    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("backend", ["auto", "fused"])
@pytest.mark.parametrize("cell", CELLS, ids=CELL_IDS)
def test_compiled_fullgraph_matches_eager_forward_and_backward(cell, backend):
    torch.manual_seed(0)
    rnn = CellRNN(cell, 4, 6, num_layers=2, backend=backend).double()
    torch.compiler.reset()  # each model is compiled anew: no recompile limit across tests
    compiled = torch.compile(rnn, fullgraph=True, backend="aot_eager")
    x, state = _inputs(cell)
    for a, b in zip(_step(compiled, x, state), _step(rnn, x, state)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_inductor_compiles_a_fused_layer_forward_and_backward():
    cell = zoo.get("gru")
    torch.manual_seed(0)
    rnn = CellRNN(cell, 4, 6, num_layers=2, backend="fused")
    torch.compiler.reset()
    compiled = torch.compile(rnn, fullgraph=True)
    x, state = _inputs(cell, dtype=torch.float32)
    for a, b in zip(_step(compiled, x, state), _step(rnn, x, state)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


LOAD = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoOptunaRnn(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "optuna_rnn":
                raise ImportError("this process must run without optuna_rnn")

    sys.meta_path.insert(0, NoOptunaRnn())
    import torch
    program = torch.export.load(sys.argv[1])
    x, *states = torch.load(sys.argv[2], weights_only=True)
    out, final = program.module()(x, tuple(states) if len(states) > 1 else states[0])
    assert not any(name.startswith("optuna_rnn") for name in sys.modules)
    torch.save([out, *(final if isinstance(final, tuple) else (final,))], sys.argv[3])
    """
)


@pytest.mark.parametrize("backend", ["auto", "fused"])
@pytest.mark.parametrize(
    "cell", [zoo.get("lstm"), zoo.get("gru"), zoo.get("mut1")], ids=["lstm", "gru", "mut1"]
)
def test_an_exported_program_runs_without_optuna_rnn(cell, backend, tmp_path):
    torch.manual_seed(0)
    rnn = CellRNN(cell, 4, 6, num_layers=2, backend=backend).eval()
    x, state = _inputs(cell, dtype=torch.float32)
    x = x.detach()
    state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    program = torch.export.export(rnn, (x, state))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert targets and not any("optuna_rnn" in t for t in targets)
    torch.export.save(program, tmp_path / "rnn.pt2")
    states = list(state) if isinstance(state, tuple) else [state]
    torch.save([x, *states], tmp_path / "inputs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, "rnn.pt2", "inputs.pt", "outputs.pt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        out, final = rnn(x, state)
    want = [out, *(final if isinstance(final, tuple) else (final,))]
    got = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_a_key_rebuilds_its_cell_in_a_fresh_process():
    core = FusedCell(zoo.get("mut1"), pointwise="torch")
    script = "import sys; from optuna_rnn.kernels.fused import FusedCell; print(FusedCell.of(sys.stdin.read()).source('f32'))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=core.key,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == core.source("f32").strip()
    again = FusedCell.of(core.key)
    assert again is core and again.pointwise == "torch"

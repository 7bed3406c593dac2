"""The fingerprint: one per computation, whatever the spelling."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn import Cell, mutate, zoo
from optuna_rnn.cell.ir import Node

_FUNC = {"tanh": ["tanh"], "sigmoid": ["sigm", "sigmoid"], "relu": ["relu"]}


def _num(v: float) -> str:
    return repr(float(v))


def spell(cell: Cell, rnd: random.Random) -> str:
    """Random equations for ``cell``: new names, commuted and regrouped operands, identity
    wrappers, shuffled equations, inlined or named intermediates, dead equations.

    An implementation independent of the printer, so that it tests the parser and the
    canonical form rather than agreeing with the printer by construction.
    """
    nodes = cell.nodes
    fresh = (f"n{k}_{rnd.randrange(10**6)}" for k in itertools.count())
    rename = {
        n.name: ("b" if n.op == "bias" else "Q") + next(fresh)
        for n in nodes
        if n.op in ("bias", "linear")
    }
    state_of: dict[int, str] = {}
    for s, i in cell.updates.items():
        state_of.setdefault(i, s)
    leaves = ("x", "state", "one", "bias")
    named = {
        i: "t" + next(fresh)
        for i, n in enumerate(nodes)
        if n.op not in leaves and i not in state_of and rnd.random() < 0.5
    }

    def ref(i: int) -> str:
        if i in state_of:
            return state_of[i] + "'"
        if i in named:
            return named[i]
        return wrap(expr(i))

    def wrap(text: str) -> str:
        return f"id({text})" if rnd.random() < 0.1 else f"({text})"

    def expr(i: int) -> str:
        n = nodes[i]
        if n.op == "x":
            return "x"
        if n.op == "state":
            return n.name
        if n.op == "one":
            return "1"
        if n.op == "bias":
            return rename[n.name] + (f"[{_num(n.value)}]" if n.value or rnd.random() < 0.2 else "")
        if n.op == "linear":
            offset = f"[{_num(n.value)}]" if n.value else ""
            return f"{rename[n.name]}{offset} {ref(n.inputs[0])}"
        if n.op in _FUNC:
            return f"{rnd.choice(_FUNC[n.op])}({ref(n.inputs[0])})"
        if n.op == "sub":
            return f"{ref(n.inputs[0])} - {ref(n.inputs[1])}"
        parts = [ref(j) for j in n.inputs]
        rnd.shuffle(parts)
        sym = " + " if n.op == "add" else " * "
        while len(parts) > 2 and rnd.random() < 0.5:  # regroup: (a + b) + c
            k = rnd.randrange(len(parts) - 1)
            parts[k : k + 2] = [f"({parts[k]}{sym}{parts[k + 1]})"]
        return sym.join(parts)

    lines = [f"{name} = {expr(i)}" for i, name in named.items()]
    for s, i in cell.updates.items():
        lines.append(f"{s}' = {expr(i)}" if state_of[i] == s else f"{s}' = {state_of[i]}'")
    for _ in range(rnd.randrange(3)):
        lines.append(f"t{next(fresh)} = tanh(Q{next(fresh)} x + {rnd.choice(cell.states)})")
    rnd.shuffle(lines)
    return "\n".join(lines)


def _mutants(n: int, seed: int) -> list[Cell]:
    rng = np.random.default_rng(seed)
    pool = [zoo.get(name) for name in zoo.names()]
    out = []
    while len(out) < n:
        parent = pool[rng.integers(len(pool))]
        if parent.num_inner_nodes > 1:
            child = mutate(parent, rng)
            out.append(child)
            pool.append(child)
    return out


MUTANTS = _mutants(60, seed=7)
CELLS = [zoo.get(name) for name in zoo.names()] + MUTANTS


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(CELLS), st.randoms(use_true_random=False))
def test_every_spelling_has_the_same_fingerprint(cell: Cell, rnd: random.Random) -> None:
    text = spell(cell, rnd)
    assert Cell.parse(text) == cell, text


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_source_text_rewritten_keeps_the_fingerprint(name: str) -> None:
    """Text-level rewrites of the zoo's own equations: renamed, reordered, padded."""
    cell = zoo.get(name)
    lines = [ln.strip() for ln in zoo.equations(name).strip().splitlines()]
    for seed in range(5):
        rnd = random.Random(seed)
        shuffled = lines[:]
        rnd.shuffle(shuffled)
        shuffled.append(f"dead{seed} = sigm(Wdead x)  # never read")
        text = "\n".join(shuffled)
        for old in sorted(
            {n.name for n in cell.nodes if n.op in ("linear", "bias")}, key=len, reverse=True
        ):
            text = text.replace(old, old[0] + f"_r{seed}" + old[1:])
        assert Cell.parse(text) == cell, text


def test_distinct_zoo_cells_have_distinct_fingerprints() -> None:
    prints = {name: zoo.get(name).fingerprint for name in zoo.names()}
    for a, b in itertools.combinations(prints, 2):
        assert prints[a] != prints[b], (a, b)


def _anonymous(cell: Cell) -> tuple:
    nodes = tuple(
        Node(n.op, n.inputs, n.name if n.op == "state" else None, n.value) for n in cell.nodes
    )
    return nodes, tuple(cell.updates.items())


def test_equal_fingerprints_mean_the_same_graph() -> None:
    """No collisions among many mutants: equal fingerprints only for equal anonymous graphs,
    and every different anonymous graph has its own fingerprint."""
    seen: dict[str, tuple] = {}
    graphs: dict[tuple, str] = {}
    for cell in CELLS + _mutants(400, seed=11):
        graph = _anonymous(cell)
        assert seen.setdefault(cell.fingerprint, graph) == graph
        assert graphs.setdefault(graph, cell.fingerprint) == cell.fingerprint


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("h' = tanh(W x + U h + b)", "h' = sigm(W x + U h + b)"),
        ("h' = tanh(W x + U h + b)", "h' = tanh(W x + U h + b[1])"),
        ("h' = tanh(W x + U h + b)", "h' = tanh(W[1] x + U h + b)"),
        ("h' = tanh(W x + U h + b)", "h' = tanh(W x + U h)"),
        ("h' = x - h", "h' = h - x"),
        ("h' = W (x * h) + V x", "h' = W (x * h) + V h"),
        ("h' = c' * x\nc' = tanh(W x + c)", "h' = c * x\nc' = tanh(W x + c)"),
        ("h' = tanh(W x + U c)\nc' = V h", "h' = tanh(W x + U c)\nc' = V h'"),
        # sharing: one linear map read twice versus two maps
        ("a = W x\nh' = a * a + h", "h' = W x * V x + h"),
    ],
)
def test_different_computations_have_different_fingerprints(a: str, b: str) -> None:
    assert Cell.parse(a) != Cell.parse(b)

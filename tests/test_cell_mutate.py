"""mutate: the paper's six transformations, valid results, reproducible per seed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn import Cell, CellError, mutate, zoo
from optuna_rnn.cell.mutate import TRANSFORMATIONS, Mutation


@pytest.fixture(scope="module")
def lstm_mutations() -> list[Mutation]:
    rng = np.random.default_rng(2015)
    return [mutate(zoo.get("lstm"), rng, return_log=True) for _ in range(2000)]


def test_each_transformation_fires_from_lstm(lstm_mutations: list[Mutation]) -> None:
    fired = Counter(t for m in lstm_mutations for t in m.transformations)
    assert set(fired) == set(TRANSFORMATIONS)


def test_every_mutant_is_a_valid_different_cell(lstm_mutations: list[Mutation]) -> None:
    lstm = zoo.get("lstm")
    for m in lstm_mutations:
        assert m.parent is lstm and isinstance(m.cell, Cell)
        assert m.cell.fingerprint != lstm.fingerprint
        assert m.cell.num_inner_nodes <= 64
        assert 0.0 <= m.p <= 1.0 and m.attempts >= 1 and m.steps
        assert all(0 <= s.node < len(lstm.nodes) for s in m.steps)


def test_mutants_round_trip_through_text_and_json(lstm_mutations: list[Mutation]) -> None:
    for m in lstm_mutations[:1000]:
        cell = m.cell
        assert Cell.parse(str(cell)) == cell, str(cell)
        assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell


def test_same_seed_same_mutant() -> None:
    def run(seed: int) -> list[tuple[str, tuple]]:
        rng = np.random.default_rng(seed)
        out = []
        for name in zoo.names():
            m = mutate(zoo.get(name), rng, return_log=True)
            out.append((str(m.cell), m.steps))
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**63), st.sampled_from(zoo.names()))
def test_same_seed_same_mutant_for_any_seed(seed: int, name: str) -> None:
    a = mutate(zoo.get(name), np.random.default_rng(seed), return_log=True)
    b = mutate(zoo.get(name), np.random.default_rng(seed), return_log=True)
    assert a == b and str(a.cell) == str(b.cell)


@pytest.mark.slow
def test_long_mutation_chains_from_every_zoo_cell() -> None:
    rng = np.random.default_rng(123)
    for name in zoo.names():
        cell = zoo.get(name)
        for _ in range(500):
            if not any(n.op not in ("x", "state", "one", "bias") for n in cell.nodes):
                cell = zoo.get(name)
            child = mutate(cell, rng, max_nodes=48)
            assert child != cell and child.num_inner_nodes <= 48
            assert Cell.parse(str(child)) == child
            assert Cell.from_dict(json.loads(json.dumps(child.to_dict()))) == child
            cell = child


def test_max_nodes_is_respected() -> None:
    rng = np.random.default_rng(0)
    lstm = zoo.get("lstm")
    sizes = [mutate(lstm, rng, max_nodes=26).num_inner_nodes for _ in range(300)]
    assert max(sizes) <= 26


def test_repeated_mutation_stays_valid() -> None:
    rng = np.random.default_rng(1)
    cell = zoo.get("gru")
    for _ in range(200):
        if cell.num_inner_nodes <= 1:
            cell = zoo.get("gru")
        cell = mutate(cell, rng, max_nodes=40)
        assert cell.num_inner_nodes <= 40
        assert Cell.parse(str(cell)) == cell


def test_linear_a_activations_get_fresh_names() -> None:
    rng = np.random.default_rng(5)
    parent = zoo.get("tanh")
    offsets = set()
    for _ in range(300):
        m = mutate(parent, rng, return_log=True)
        names = [n.name for n in m.cell.nodes if n.name]
        assert len(names) == len(set(names))
        offsets |= {n.value for n in m.cell.nodes if n.op == "linear"}
    assert offsets == {0.0, 0.9, 1.0, 1.1}


def test_bad_input() -> None:
    with pytest.raises(CellError, match="no operation node"):
        mutate(Cell.parse("h' = x"), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        mutate(zoo.get("gru"), 0)  # type: ignore[arg-type]


def test_importing_mutate_does_not_import_torch() -> None:
    code = (
        "import sys, optuna_rnn; optuna_rnn.mutate; optuna_rnn.zoo.get('lstm');"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


ACTS = ["tanh({})", "sigm({})", "relu({})", "linear(0, {})", "linear(1, {})", "linear(0.9, {})"]
ACTS.append("linear(1.1, {})")


def test_each_transformation_gives_exactly_the_paper_outcomes() -> None:
    """On h' = tanh(x) (one operation node) every outcome of every transformation shows up,
    and nothing else does."""
    rng = np.random.default_rng(0)
    parent = Cell.parse("h' = tanh(x)")
    seen: dict[str, set[Cell]] = {}
    for _ in range(600):
        m = mutate(parent, rng, return_log=True)
        (step,) = m.steps
        seen.setdefault(step.transformation, set()).add(m.cell)

    def cells(*texts: str) -> set[Cell]:
        return {Cell.parse(f"h' = {t}") for t in texts}

    assert seen == {
        "change_activation": cells(*(a.format("x") for a in ACTS[1:])),
        "insert_activation": cells(*(f"tanh({a.format('x')})" for a in ACTS)),
        "remove_node": cells("x"),
        "replace_with_ancestor": cells("x"),
    }


def test_transformations_of_an_elementwise_node() -> None:
    """Single-step mutations of the product in h' = tanh(x) * h, by transformation."""
    rng = np.random.default_rng(0)
    parent = Cell.parse("h' = tanh(x) * h")
    product = parent.updates["h"]
    seen: dict[str, set[Cell]] = {}
    for _ in range(1500):
        m = mutate(parent, rng, return_log=True)
        if len(m.steps) == 1 and m.steps[0].node == product:
            seen.setdefault(m.steps[0].transformation, set()).add(m.cell)

    def cells(*texts: str) -> set[Cell]:
        return {Cell.parse(f"h' = {t}") for t in texts}

    assert seen["change_elementwise"] == cells("tanh(x) + h", "tanh(x) - h", "h - tanh(x)")
    # h' = h alone never reads x: invalid, so never proposed
    assert seen["replace_with_ancestor"] == cells("x", "tanh(x)")
    # an ancestor of the product (x, h, tanh(x)) with an ancestor of tanh(x) before it (x)
    assert seen["combine_ancestors"] == cells(
        *(f"{a} {op} x" for a in ("x", "h", "tanh(x)") for op in "+-*")
    )
    assert len(seen["insert_activation"]) == 2 * len(ACTS) and "remove_node" not in seen

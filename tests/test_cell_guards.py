"""Every description is a Cell or a CellError (issue 21): -0, huge numbers, huge dicts,
long names, and random input by hypothesis."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optuna_rnn import Cell, CellError, CellRNN, zoo
from optuna_rnn.cell.ir import DEFAULT_MAX_NODES, MAX_NAME, MAX_VALUE, node_budget
from optuna_rnn.cell.parse import parse


def test_minus_zero_is_zero_in_every_form():
    plain = Cell.parse("h' = tanh(W x + U h)")
    for text in ("h' = tanh(W[-0] x + U h)", "h' = tanh(W[-0.0] x + U h + b[-0]) - b[0]"):
        cell = Cell.parse(text)
        assert Cell.from_dict(cell.to_dict()) == cell
        assert Cell.parse(str(cell)) == cell
    assert Cell.parse("h' = tanh(W[-0] x + U h)") == plain
    assert Cell.parse("h' = tanh(linear(-0, x) + U h)") == Cell.parse(
        "h' = tanh(linear(0, x) + U h)"
    )


@pytest.mark.parametrize("number", ["1e308", "3.5e38", "-1e39"])
@pytest.mark.parametrize("where", ["h' = tanh(W[{}] x + U h)", "h' = tanh(W x + U h + b[{}])"])
def test_bracketed_numbers_beyond_float32_are_refused_naming_the_bound(number, where):
    with pytest.raises(CellError, match="largest float32"):
        Cell.parse(where.format(number))


def test_the_largest_float32_builds():
    cell = Cell.parse(f"h' = tanh(W x + U h + b[{MAX_VALUE!r}])")
    CellRNN(cell, 3, 4)  # no overflow converting the bias


def test_from_dict_refuses_huge_ints_lists_and_names_before_work():
    base = Cell.parse("h' = tanh(W x + U h + b)").to_dict()
    bias = next(n for n in base["nodes"] if n["op"] == "bias")
    bias["value"] = 10**400
    with pytest.raises(CellError, match="integer of 1329 bits"):
        Cell.from_dict(base)
    nodes = [{"op": "x"}] * 1_000_000
    start = time.process_time()
    with pytest.raises(CellError, match=f"at most {node_budget(DEFAULT_MAX_NODES)}"):
        Cell.from_dict({"version": 1, "nodes": nodes, "states": {"h": 0}})
    assert time.process_time() - start < 0.5  # refused before reading the nodes
    long = "W" * (MAX_NAME + 1)
    data = Cell.parse("h' = tanh(W x + U h)").to_dict()
    next(n for n in data["nodes"] if n.get("name") == "W")["name"] = "W" * 10_000_000
    with pytest.raises(CellError, match=f"more than {MAX_NAME}"):
        Cell.from_dict(data)
    with pytest.raises(CellError, match=f"more than {MAX_NAME}"):
        parse(f"h' = tanh({long} x + U h)")
    assert Cell.parse(f"h' = tanh({long[:-1]} x + U h)")  # the limit itself is fine
    with pytest.raises(CellError, match="at most 3 states"):
        Cell.from_dict(
            {"version": 1, "nodes": [{"op": "x"}], "states": {f"s{i}": 0 for i in range(10_000)}}
        )


def test_a_cell_without_parameters_is_a_cell_that_cellrnn_refuses():
    cell = Cell.parse("z = h + h; h' = h * sigm(z) - x")
    assert not cell.learnable and zoo.get("gru").learnable
    assert Cell.from_dict(cell.to_dict()) == cell
    with pytest.raises(ValueError, match="no learnable parameter"):
        CellRNN(cell, 3, 3)


# ----------------------------------------------------------------- property tests
ALPHABET = "hxcWUbz'=+-*();\n #[]0123456789.eE_,sigmtanhrelulinear"
words = st.sampled_from(
    [
        "h'",
        "c'",
        "h",
        "c",
        "x",
        "W",
        "U",
        "V",
        "b",
        "b1",
        "tanh",
        "sigm",
        "relu",
        "linear",
        "id",
        "(",
        ")",
        "+",
        "-",
        "*",
        "=",
        "1",
        "[",
        "]",
        "-0",
        "1e308",
        "0.5",
        ",",
        ";",
        "\n",
        " ",
    ]
)
leaves = st.sampled_from(
    ["x", "h", "c", "1", "b", "b1[-0]", "b2[0.5]", "b3[1e38]", "b4[1e39]", "z"]
)
weights = st.sampled_from(["W", "U", "V", "W[-0]", "U[1.5]", "float", "train", "V[-2]"])
expressions = st.recursive(
    leaves,
    lambda e: st.one_of(
        st.tuples(weights, e).map(lambda t: f"{t[0]} ({t[1]})"),
        st.tuples(st.sampled_from(["tanh", "sigm", "relu", "id"]), e).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(e, st.sampled_from(["+", "-", "*"]), e).map(" ".join),
        e.map(lambda t: f"linear(-0, {t})"),
    ),
    max_leaves=12,
)
equations = st.tuples(expressions, st.none() | expressions, st.none() | expressions).map(
    lambda t: "\n".join(
        [f"h' = {t[0]}"] + ([f"c' = {t[1]}"] if t[1] else []) + ([f"z = {t[2]}"] if t[2] else [])
    )
)
texts = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=ALPHABET, max_size=80),
    st.lists(words, max_size=40).map(" ".join),
    equations,
    equations,
)


def _round_trips(cell: Cell) -> None:
    assert Cell.parse(str(cell)) == cell
    assert Cell.from_dict(cell.to_dict()) == cell


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_parse_gives_a_cell_or_a_cell_error(text):
    try:
        cell = Cell.parse(text)
    except CellError:
        return
    _round_trips(cell)


ops = st.sampled_from(
    [
        "x",
        "state",
        "one",
        "bias",
        "linear",
        "add",
        "sub",
        "mul",
        "tanh",
        "sigmoid",
        "relu",
        "identity",
        "bogus",
        3,
        None,
    ]
)
values = st.one_of(
    st.floats(allow_nan=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.just(-0.0),
    st.text(max_size=5),
    st.none(),
    st.booleans(),
)
names = st.one_of(
    st.sampled_from(["h", "c", "W", "U", "b", "b1", "x", "tanh"]),
    st.text(max_size=6),
    st.integers(),
)
nodes = st.fixed_dictionaries(
    {"op": ops},
    optional={
        "inputs": st.one_of(
            st.lists(st.integers(-1, 8), max_size=4), st.integers(), st.text(max_size=2)
        ),
        "name": names,
        "value": values,
        "label": names,
    },
)


def _cell_dict(text: str) -> dict:
    try:
        return Cell.parse(text).to_dict()
    except CellError:
        return {"version": 1, "nodes": [], "states": {}}


dicts = st.one_of(
    equations.map(_cell_dict),
    st.fixed_dictionaries(
        {
            "version": st.sampled_from([1, 1.0, 2, "1", None]),
            "nodes": st.lists(nodes, max_size=10),
            "states": st.dictionaries(
                names, st.one_of(st.integers(-1, 10), st.text(max_size=2)), max_size=4
            ),
        }
    ),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dicts)
def test_from_dict_gives_a_cell_or_a_cell_error(data):
    try:
        cell = Cell.from_dict(data)
    except CellError:
        return
    _round_trips(cell)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(zoo.names()))
def test_every_zoo_cell_round_trips(name):
    _round_trips(zoo.get(name))


def test_mutants_of_a_learnable_cell_stay_learnable():
    import numpy as np

    from optuna_rnn import mutate

    rng = np.random.default_rng(0)
    parent = Cell.parse("h' = tanh(W x) * h")  # removing W's node leaves tanh(x) * h
    assert all(mutate(parent, rng).learnable for _ in range(300))

"""The equation language: the paper's cells parse as written, errors name their cause."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optuna_rnn import Cell, CellError, zoo
from optuna_rnn.cell.ir import Node

# The cells of Jozefowicz, Zaremba and Sutskever (ICML 2015), transcribed from the paper.
PAPER_GRU = """
    r = sigm(Wxr x + Whr h + br)
    z = sigm(Wxz x + Whz h + bz)
    n = tanh(Wxh x + Whh (r * h) + bh)
    h' = z * h + (1 - z) * n
"""
PAPER_LSTM = """
    i = tanh(Wxi x + Whi h + bi)        # the paper writes the input node with tanh
    j = sigm(Wxj x + Whj h + bj)        # input gate
    f = sigm(Wxf x + Whf h + bf)        # forget gate
    o = sigm(Wxo x + Who h + bo)        # output gate (some copies of the paper print tanh)
    c' = f * c + i * j
    h' = o * tanh(c')
"""
PAPER_TANH = "h' = tanh(Wx x + Wh h + b)"
PAPER_MUT1 = """
    z = sigm(Wxz x + bz)
    r = sigm(Wxr x + Whr h + br)
    h' = tanh(Whh (r * h) + tanh(x) + bh) * z + h * (1 - z)
"""
PAPER_MUT2 = """
    z = sigm(Wxz x + Whz h + bz)
    r = sigm(x + Whr h + br)
    h' = tanh(Whh (r * h) + Wxh x + bh) * z + h * (1 - z)
"""
PAPER_MUT3 = """
    z = sigm(Wxz x + Whz tanh(h) + bz)
    r = sigm(Wxr x + Whr h + br)
    h' = tanh(Whh (r * h) + Wxh x + bh) * z + h * (1 - z)
"""


def sigm(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def evaluate(cell: Cell, params: dict[str, np.ndarray], x: np.ndarray, state: dict) -> dict:
    """A plain numpy interpreter of the IR: the new value of every state."""
    vals: list[np.ndarray] = []
    for n in cell.nodes:
        ins = [vals[j] for j in n.inputs]
        if n.op == "x":
            v = x
        elif n.op == "state":
            v = state[n.name]
        elif n.op == "one":
            v = np.ones_like(x)
        elif n.op == "bias":
            v = params[n.name]
        elif n.op == "linear":
            v = params[n.name] @ ins[0] + n.value * ins[0]
        elif n.op == "add":
            v = sum(ins)
        elif n.op == "mul":
            v = np.prod(ins, axis=0)
        elif n.op == "sub":
            v = ins[0] - ins[1]
        else:
            v = {"tanh": np.tanh, "sigmoid": sigm, "relu": lambda a: np.maximum(a, 0)}[n.op](ins[0])
        vals.append(v)
    return {s: vals[i] for s, i in cell.updates.items()}


def random_params(cell: Cell, rng: np.random.Generator, width: int) -> dict[str, np.ndarray]:
    return {
        n.name: rng.normal(size=(width, width) if n.op == "linear" else width)
        for n in cell.nodes
        if n.op in ("linear", "bias")
    }


def _gru(p, x, s):
    h = s["h"]
    r = sigm(p["Wxr"] @ x + p["Whr"] @ h + p["br"])
    z = sigm(p["Wxz"] @ x + p["Whz"] @ h + p["bz"])
    n = np.tanh(p["Wxh"] @ x + p["Whh"] @ (r * h) + p["bh"])
    return {"h": z * h + (1 - z) * n}


def _lstm(p, x, s):
    h, c = s["h"], s["c"]
    i = np.tanh(p["Wxi"] @ x + p["Whi"] @ h + p["bi"])
    j = sigm(p["Wxj"] @ x + p["Whj"] @ h + p["bj"])
    f = sigm(p["Wxf"] @ x + p["Whf"] @ h + p["bf"])
    o = sigm(p["Wxo"] @ x + p["Who"] @ h + p["bo"])
    c2 = f * c + i * j
    return {"h": o * np.tanh(c2), "c": c2}


def _tanh(p, x, s):
    return {"h": np.tanh(p["Wx"] @ x + p["Wh"] @ s["h"] + p["b"])}


def _mut1(p, x, s):
    h = s["h"]
    z = sigm(p["Wxz"] @ x + p["bz"])
    r = sigm(p["Wxr"] @ x + p["Whr"] @ h + p["br"])
    return {"h": np.tanh(p["Whh"] @ (r * h) + np.tanh(x) + p["bh"]) * z + h * (1 - z)}


def _mut2(p, x, s):
    h = s["h"]
    z = sigm(p["Wxz"] @ x + p["Whz"] @ h + p["bz"])
    r = sigm(x + p["Whr"] @ h + p["br"])
    return {"h": np.tanh(p["Whh"] @ (r * h) + p["Wxh"] @ x + p["bh"]) * z + h * (1 - z)}


def _mut3(p, x, s):
    h = s["h"]
    z = sigm(p["Wxz"] @ x + p["Whz"] @ np.tanh(h) + p["bz"])
    r = sigm(p["Wxr"] @ x + p["Whr"] @ h + p["br"])
    return {"h": np.tanh(p["Whh"] @ (r * h) + p["Wxh"] @ x + p["bh"]) * z + h * (1 - z)}


PAPER_CELLS = [
    ("gru", PAPER_GRU, _gru),
    ("lstm", PAPER_LSTM, _lstm),
    ("tanh", PAPER_TANH, _tanh),
    ("mut1", PAPER_MUT1, _mut1),
    ("mut2", PAPER_MUT2, _mut2),
    ("mut3", PAPER_MUT3, _mut3),
]


@pytest.mark.parametrize(("name", "text", "formula"), PAPER_CELLS, ids=[c[0] for c in PAPER_CELLS])
def test_paper_blocks_parse_as_written(name: str, text: str, formula) -> None:
    cell = Cell.parse(text)
    assert cell == zoo.get(name)
    rng = np.random.default_rng(0)
    params = random_params(cell, rng, 4)
    x = rng.normal(size=4)
    state = {s: rng.normal(size=4) for s in cell.states}
    got, want = evaluate(cell, params, x, state), formula(params, x, state)
    assert got.keys() == want.keys()
    for s in want:
        np.testing.assert_allclose(got[s], want[s], rtol=1e-12)


def test_states_h_first_then_sorted() -> None:
    assert Cell.parse(PAPER_LSTM).states == ("h", "c")
    three = Cell.parse("h' = tanh(W x + U a + V c)\nc' = sigm(Q h)\na' = c")
    assert three.states == ("h", "a", "c")


def test_bias_initial_value_and_diagonal_offset() -> None:
    cell = Cell.parse("h' = tanh(W[0.9] x + U[-1.1] h + b[1])")
    by_name = {n.name: n for n in cell.nodes if n.name}
    assert (by_name["W"].value, by_name["U"].value, by_name["b"].value) == (0.9, -1.1, 1.0)
    assert Cell.parse("h' = tanh(W x + U h + b)") != cell


def test_a_value_given_at_any_use_holds_for_all() -> None:
    first = Cell.parse("h' = tanh(W x + U h + bf) * sigm(V[0.5] x + bf[1])\nt = V x")
    later = Cell.parse("h' = tanh(W x + U h + bf[1]) * sigm(V x + bf)\nt = V[0.5] x")
    assert first == later
    assert {n.name: n.value for n in first.nodes if n.name in ("bf", "V")} == {"bf": 1, "V": 0.5}


def test_linear_a_x_is_a_fresh_weight_with_offset_and_a_fresh_bias() -> None:
    cell = Cell.parse("h' = tanh(linear(0.9, x) + U h)")
    assert cell == Cell.parse("h' = tanh(W1[0.9] x + b1 + U h)")
    # Two uses are two different maps, never a shared one.
    two = Cell.parse("h' = linear(1, x) * linear(1, h)")
    assert (
        sorted(n.op for n in two.nodes if n.op in ("linear", "bias"))
        == ["bias"] * 2 + ["linear"] * 2
    )


def test_new_value_of_a_state_on_a_right_hand_side() -> None:
    # h' = o * tanh(c') reads the new c, not the old one.
    cell = Cell.parse(PAPER_LSTM)
    new_c = cell.updates["c"]
    tanh_of_new_c = cell.nodes.index(Node("tanh", (new_c,)))
    assert tanh_of_new_c in cell.nodes[cell.updates["h"]].inputs


def test_canonical_simplifications() -> None:
    plain = Cell.parse("h' = tanh(W x + U h + b)")
    assert Cell.parse("h' = identity(tanh(id(W x) + (U h + b)))") == plain
    assert Cell.parse("h' = tanh(W x + U h + b) * 1") == plain
    assert Cell.parse("t = sigm(Q x)\nh' = tanh(W x + U h + b)") == plain
    # a state that never reaches h is dropped
    assert Cell.parse("h' = tanh(W x + U h + b)\nc' = tanh(V c + Q x)") == plain
    assert Cell.parse("h' = (a * b2) * h\na = tanh(x)\nb2 = x") == Cell.parse(
        "h' = tanh(x) * x * h"
    )


def test_same_weight_name_on_same_operand_is_one_node() -> None:
    cell = Cell.parse("a = W x\nh' = tanh(a + W x + U h)")
    assert sum(1 for n in cell.nodes if n.op == "linear" and n.name == "W") == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h' = tanh(Wx x +", "line 1: expected an operand, found end of line"),
        ("h' = tanh(Wx x", "line 1: expected ')'"),
        ("h' = x\n\nh' = tanh(Wx x))", "line 3: unexpected ')'"),
        ("h' = x $ h", "line 1: unexpected character '$'"),
        ("\nh' = sin(Wx x + Wh h)", "line 2: unknown function 'sin'"),
        ("h' = tanh(Wx x + Wh h + q)", "line 1: undefined name 'q'"),
        ("h' = tanh(Wx x + Wh h)\nz = sigm(W2 x + n)", "line 2: undefined name 'n'"),
        (
            "a = tanh(Wa x + Ua d)\nd = sigm(Wd a)\nh' = a * h",
            "cycle in the equations: a -> d -> a",
        ),
        ("h' = tanh(Wx x + Wh c)", "undefined name 'c' (a state needs an equation c' = ...)"),
        ("h' = tanh(b)", "the update of h' ignores x and every state"),
        ("c' = tanh(bc)\nh' = tanh(Wx x + Wh c)", "the update of c' ignores x and every state"),
        ("h' = " + " + ".join(f"W{i} x" for i in range(70)), "more than the limit of 64"),
        ("c' = x", "no update for h"),
        ("h' = tanh(W h)", "never reads its input x"),
        ("h' = 2 * x", "line 1: only the constant 1"),
        ("h' = x\nh' = h", "line 2: h' is defined twice (also on line 1)"),
        ("h' = W x + W h", "line 1: weight 'W' is applied to two different operands"),
        ("h' = bW x + bW", "'bW' names both a weight and a bias"),
        ("h' = h x", "line 1: 'h' is a value, not a weight"),
        ("h' = x + a + c + d\na' = x\nc' = x\nd' = x", "at most 3 states"),
        ("h' = W[1] x + bq[1] + bq[2]", "initial value of bias 'bq' is given twice, 1 and 2"),
        ("a = W x\nh' = W[2] x * W[1] x + a", "diagonal offset of weight 'W' is given twice"),
        ("tanh = x\nh' = x", "line 1: 'tanh' is reserved"),
        ("", "no equations"),
    ],
)
def test_error_messages_name_the_fault(text: str, message: str) -> None:
    with pytest.raises(CellError) as err:
        Cell.parse(text)
    assert message in str(err.value)


def test_node_limit_is_a_parameter() -> None:
    text = "h' = tanh(Wx x + Wh h + b)"
    assert Cell.parse(text, max_nodes=5).num_inner_nodes == 5
    with pytest.raises(CellError, match="more than the limit of 4"):
        Cell.parse(text, max_nodes=4)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_round_trips_through_text_and_json(name: str) -> None:
    cell = zoo.get(name)
    assert Cell.parse(str(cell)) == cell
    assert str(Cell.parse(str(cell))) == str(cell)
    again = Cell.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert again == cell and again.nodes == cell.nodes and again.labels == cell.labels


def test_from_dict_drops_labels_that_clash_with_a_state() -> None:
    nodes = [
        {"op": "x"},
        {"op": "linear", "inputs": [0], "name": "W"},
        {"op": "tanh", "inputs": [1], "label": "h"},
        {"op": "relu", "inputs": [2]},
    ]
    cell = Cell.from_dict({"version": 1, "nodes": nodes, "states": {"h": 3}})
    assert cell.labels == {} and Cell.parse(str(cell)) == cell


def _dict(nodes: list, states: dict) -> dict:
    return {"version": 1, "nodes": nodes, "states": states}


X_ = {"op": "x"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "must be a mapping"),
        ({"version": 2, "nodes": [], "states": {}}, "unsupported cell format version 2"),
        (_dict([{"op": ["x"]}], {"h": 0}), "node 0: unknown operation"),
        (_dict([X_, {"op": "tanh", "inputs": [1]}], {"h": 1}), "node 1 must read only nodes"),
        (_dict([X_, {"op": "bias", "name": "bq", "value": "z"}], {"h": 0}), "bias 'bq'"),
        (_dict([X_], {"h": True}), "state 'h' names no node"),
        (
            _dict([X_, {"op": "state", "name": "c"}, {"op": "add", "inputs": [0, 1]}], {"h": 2}),
            "state 'c' is read but has no update",
        ),
        (
            _dict([X_, {"op": "linear", "inputs": [0, 0], "name": "W"}], {"h": 1}),
            "node 1: a linear",
        ),
    ],
)
def test_from_dict_rejects_bad_input(data: object, message: str) -> None:
    with pytest.raises(CellError, match=re.escape(message)):
        Cell.from_dict(data)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ fuzz
_TOKENS = [
    "h", "c", "a", "x", "W", "Wx", "U", "b", "bf", "1", "2", "0.9", "'", "=", "+", "-", "*",
    "(", ")", "[", "]", ",", "\n", ";", " ", "#", "tanh", "sigm", "relu", "id", "linear",
    "sin", "h'", "c'", "h' =", "c' =", "x)", "(1 - z)",
]  # fmt: skip
_SEEDS = [PAPER_LSTM, PAPER_MUT1] + [str(zoo.get(n)) for n in ("lstm", "gru", "mut1", "fgr")]


def _edited(seed: str, edits: list[tuple[int, int, str]]) -> str:
    for pos, cut, text in edits:
        pos %= len(seed) + 1
        seed = seed[:pos] + text + seed[pos + cut :]
    return seed


# Grammatical equations over a few names: they reach the resolver and the canonical form
# (undefined names, cycles, shared weights, missing states...) rather than the tokenizer.
_operand = st.sampled_from(["x", "h", "x", "h", "c", "a", "z", "bf[1]", "q", "h'", "c'", "a'", "1"])
_expr = st.recursive(
    _operand,
    lambda e: st.one_of(
        st.builds("({} {} {})".format, e, st.sampled_from("+-*"), e),
        st.builds("{}({})".format, st.sampled_from(["tanh", "sigm", "relu", "id", "tanh"]), e),
        st.builds("{} ({})".format, st.sampled_from(["W", "U", "W[0.9]", "h"]), e),
        st.builds("linear({}, {})".format, st.sampled_from(["0", "1.1", "-1"]), e),
    ),
    max_leaves=8,
)
_equations = st.builds(
    lambda first, rest: "\n".join([f"h' = {first}", *(f"{k} = {v}" for k, v in rest.items())]),
    _expr,
    st.dictionaries(st.sampled_from(["c'", "a'", "a", "z"]), _expr, max_size=3),
)

fuzz_text = st.one_of(
    _equations,
    _equations,
    st.text(alphabet="hcxWUbz'=+-*()[],;#\n 01.9_tanhsigmrelu", max_size=80),
    st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join),
    st.lists(st.sampled_from(_TOKENS), max_size=40).map(" ".join),
    st.builds(
        _edited,
        st.sampled_from(_SEEDS),
        st.lists(
            st.tuples(st.integers(0, 400), st.integers(0, 5), st.sampled_from(_TOKENS)), max_size=4
        ),
    ),
    st.text(max_size=40),
)


def _parse_or_error(text: str) -> None:
    try:
        cell = Cell.parse(text)
    except CellError:
        return
    assert Cell.parse(str(cell)) == cell


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_text)
def test_fuzz_any_text_gives_a_cell_or_a_cell_error(text: str) -> None:
    _parse_or_error(text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_equations)
def test_fuzz_grammatical_equations_give_a_cell_or_a_cell_error(text: str) -> None:
    _parse_or_error(text)


@pytest.mark.slow
@settings(max_examples=30_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_text)
def test_fuzz_slow(text: str) -> None:
    _parse_or_error(text)


_node = st.fixed_dictionaries(
    {
        "op": st.sampled_from(
            ["x", "state", "one", "bias", "linear", "add", "sub", "mul", "tanh", "relu", "zz"]
        )
    },
    optional={
        "inputs": st.lists(st.integers(-1, 6), max_size=3),
        "name": st.sampled_from(["h", "c", "W", "b", "bq", "x", 3, ""]),
        "value": st.one_of(st.floats(), st.text(max_size=2)),
        "label": st.sampled_from(["t", "W", "h", "c", "1a", None]),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_node, max_size=8),
    st.dictionaries(st.sampled_from(["h", "c", "1"]), st.integers(-1, 8)),
)
def test_fuzz_from_dict_gives_a_cell_or_a_cell_error(nodes: list, states: dict) -> None:
    try:
        cell = Cell.from_dict({"version": 1, "nodes": nodes, "states": states})
    except CellError:
        return
    assert Cell.from_dict(cell.to_dict()) == cell
    assert Cell.parse(str(cell)) == cell
    assert all(isinstance(n, Node) for n in cell.nodes)

"""The zoo: every named cell, its source, and the PyTorch correspondences it claims."""

from __future__ import annotations

import numpy as np
import pytest
from test_cell_parse import evaluate, random_params, sigm

from optuna_rnn import Cell, CellError, mutate, zoo

REQUIRED = [
    "tanh", "lstm", "lstm_f", "lstm_i", "lstm_o", "lstm_b", "gru", "gru_torch", "mut1", "mut2",
    "mut3", "nig", "nfg", "nog", "niaf", "noaf", "peephole", "cifg", "fgr", "mgu",
]  # fmt: skip


def test_names_cover_the_issue() -> None:
    assert set(REQUIRED) <= set(zoo.names())
    assert len(zoo.names()) >= len(REQUIRED) + 2
    assert len(set(zoo.names())) == len(zoo.names())


@pytest.mark.parametrize("name", zoo.names())
def test_each_cell_has_a_source_and_a_name(name: str) -> None:
    assert len(zoo.source(name)) > 10
    assert zoo.name_of(zoo.get(name)) == name
    assert zoo.name_of(Cell.parse(str(zoo.get(name)))) == name


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(CellError, match="unknown zoo cell 'lsmt'.*lstm, lstm_f"):
        zoo.get("lsmt")
    with pytest.raises(CellError, match="unknown zoo cell"):
        zoo.source("nope")


def test_name_of_agrees_with_a_search_of_the_zoo() -> None:
    rng = np.random.default_rng(0)
    cells = [mutate(zoo.get("lstm_f"), rng) for _ in range(50)]
    cells.append(Cell.parse("h' = relu(W x + U h)"))
    cells.append(Cell.parse(str(zoo.get("lstm")).replace("bf", "bq")))  # renamed: still lstm
    for cell in cells:
        found = [name for name in zoo.names() if zoo.get(name) == cell]
        assert zoo.name_of(cell) == (found[0] if found else None)
    assert zoo.name_of(cells[-2]) is None and zoo.name_of(cells[-1]) == "lstm"


def test_states() -> None:
    assert zoo.get("gru").states == ("h",)
    assert zoo.get("lstm").states == ("h", "c")
    assert zoo.get("fgr").states == ("h", "c", "g")


def test_lstm_b_is_lstm_with_forget_bias_one() -> None:
    values = {n.name: n.value for n in zoo.get("lstm_b").nodes if n.op == "bias"}
    assert values == {"bi": 0.0, "bj": 0.0, "bf": 1.0, "bo": 0.0}
    assert Cell.parse(str(zoo.get("lstm_b")).replace("bf[1]", "bf")) == zoo.get("lstm")


@pytest.mark.parametrize(
    ("variant", "removed"),
    [
        ("lstm_f", "bf"),
        ("lstm_i", "bj"),
        ("lstm_o", "bo"),
        ("nig", "bj"),
        ("nfg", "bf"),
        ("nog", "bo"),
    ],
)
def test_gate_removals(variant: str, removed: str) -> None:
    biases = {n.name for n in zoo.get(variant).nodes if n.op == "bias"}
    assert removed not in biases and len(biases) == (3 if variant.startswith("lstm") else 5)


def _torch_lstm(w_ih, w_hh, b_ih, b_hh, x, h, c):
    """nn.LSTM's step, gates in PyTorch's (i, f, g, o) order."""
    gates = w_ih @ x + b_ih + w_hh @ h + b_hh
    i, f, g, o = np.split(gates, 4)
    c2 = sigm(f) * c + sigm(i) * np.tanh(g)
    return sigm(o) * np.tanh(c2), c2


def _torch_gru(w_ih, w_hh, b_ih, b_hh, x, h):
    """nn.GRU's step, gates in PyTorch's (r, z, n) order."""
    (xr, xz, xn), (hr, hz, hn) = np.split(w_ih @ x + b_ih, 3), np.split(w_hh @ h + b_hh, 3)
    r, z = sigm(xr + hr), sigm(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def test_lstm_is_pytorchs_lstm() -> None:
    """nn.LSTM's g is our i, its i our j; its two biases per gate sum to our one."""
    rng = np.random.default_rng(0)
    k = 5
    w_ih, w_hh, b_ih, b_hh = (rng.normal(size=s) for s in [(4 * k, k), (4 * k, k), 4 * k, 4 * k])
    x, h, c = (rng.normal(size=k) for _ in range(3))
    params = {}
    for block, gate in enumerate("jfio"):  # PyTorch order i, f, g, o -> our j, f, i, o
        rows = slice(block * k, (block + 1) * k)
        params |= {
            f"Wx{gate}": w_ih[rows],
            f"Wh{gate}": w_hh[rows],
            f"b{gate}": b_ih[rows] + b_hh[rows],
        }
    got = evaluate(zoo.get("lstm"), params, x, {"h": h, "c": c})
    want_h, want_c = _torch_lstm(w_ih, w_hh, b_ih, b_hh, x, h, c)
    np.testing.assert_allclose(got["h"], want_h, rtol=1e-12)
    np.testing.assert_allclose(got["c"], want_c, rtol=1e-12)


def test_gru_torch_is_pytorchs_gru_and_gru_is_not() -> None:
    rng = np.random.default_rng(1)
    k = 5
    w_ih, w_hh, b_ih, b_hh = (rng.normal(size=s) for s in [(3 * k, k), (3 * k, k), 3 * k, 3 * k])
    x, h = rng.normal(size=k), rng.normal(size=k)
    r, z, n = (slice(j * k, (j + 1) * k) for j in range(3))
    params = {
        "Wxr": w_ih[r], "Whr": w_hh[r], "br": b_ih[r] + b_hh[r],
        "Wxz": w_ih[z], "Whz": w_hh[z], "bz": b_ih[z] + b_hh[z],
        "Wxn": w_ih[n], "Whn": w_hh[n], "bxn": b_ih[n], "bhn": b_hh[n],
    }  # fmt: skip
    want = _torch_gru(w_ih, w_hh, b_ih, b_hh, x, h)
    np.testing.assert_allclose(
        evaluate(zoo.get("gru_torch"), params, x, {"h": h})["h"], want, rtol=1e-12
    )
    paper = params | {
        "Wxh": params["Wxn"],
        "Whh": params["Whn"],
        "bh": params["bxn"] + params["bhn"],
    }
    assert not np.allclose(evaluate(zoo.get("gru"), paper, x, {"h": h})["h"], want)


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_cell_evaluates_to_finite_values(name: str) -> None:
    cell = zoo.get(name)
    rng = np.random.default_rng(0)
    out = evaluate(
        cell,
        random_params(cell, rng, 3),
        rng.normal(size=3),
        {s: rng.normal(size=3) for s in cell.states},
    )
    assert set(out) == set(cell.states) and all(np.isfinite(v).all() for v in out.values())

"""GatedSpace: zoo cells are points, params round-trip, bad params raise CellError."""

from __future__ import annotations

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.cell import Cell, CellError, zoo
from optuna_rnn.spaces import GatedSpace

REQUIRED = [
    "tanh",
    "lstm",
    "lstm_f",
    "lstm_i",
    "lstm_o",
    "lstm_b",
    "gru",
    "mut1",
    "mut2",
    "mut3",
    "cifg",
    "mgu",
]
ALSO = ["gru_torch", "ugrnn", "indrnn", "peephole", "nig", "nfg", "nog", "niaf", "noaf"]
SPACE = GatedSpace()


@pytest.mark.parametrize("name", REQUIRED + ALSO)
def test_zoo_cell_round_trips(name: str) -> None:
    cell = zoo.get(name)
    params = SPACE.encode(cell)
    assert all(k.startswith("cell.") for k in params)
    assert SPACE.decode(params).fingerprint == cell.fingerprint
    dists = SPACE.distributions(params)
    assert list(dists) == list(params)
    assert all(params[k] in d.choices for k, d in dists.items())
    # Optuna accepts the encoded params as a trial's suggestions.
    assert SPACE.suggest(optuna.trial.FixedTrial(params)).fingerprint == cell.fingerprint


def test_gru_params_read_as_the_paper_writes_it() -> None:
    params = SPACE.encode(zoo.get("gru"))
    assert params["cell.update"] == "interpolate_old"
    assert params["cell.reset"] == "gate" and params["cell.reset_at"] == "before"
    mut1 = SPACE.encode(zoo.get("mut1"))
    assert mut1["cell.update"] == "interpolate_new"
    assert mut1["cell.update_gate.reads"] == "x" and mut1["cell.candidate.x"] == "tanh"
    assert SPACE.encode(zoo.get("mut2"))["cell.reset_gate.x"] == "identity"
    assert SPACE.encode(zoo.get("mut3"))["cell.update_gate.h"] == "linear_tanh"
    assert SPACE.encode(zoo.get("mgu"))["cell.reset"] == "update_gate"
    assert SPACE.encode(zoo.get("gru_torch"))["cell.reset_at"] == "after"
    assert SPACE.encode(zoo.get("cifg"))["cell.forget"] == "coupled"
    assert SPACE.encode(zoo.get("indrnn"))["cell.candidate.h"] == "diagonal"


def test_forget_bias_sets_the_gate_that_keeps_the_old_state() -> None:
    assert SPACE.encode(zoo.get("lstm_b"))["cell.forget_bias"] == 1.0
    assert SPACE.encode(zoo.get("lstm"))["cell.forget_bias"] == 0.0
    params = dict(SPACE.encode(zoo.get("mut1")), **{"cell.forget_bias": 1.0})
    # z gates the candidate, so 1 - z keeps the old state: z's bias starts at -1.
    biases = [n.value for n in SPACE.decode(params).nodes if n.op == "bias"]
    assert sorted(biases) == [-1.0, 0.0, 0.0]


def test_cells_outside_the_space_raise() -> None:
    for name in ("janet", "fgr"):
        with pytest.raises(CellError, match="not a point of GatedSpace"):
            SPACE.encode(zoo.get(name))
        assert zoo.get(name) not in SPACE
    assert zoo.get("gru") in SPACE
    off_bias = Cell.parse("h' = tanh(Wx x + Wh h + b[0.5])")
    assert off_bias not in SPACE
    with pytest.raises(CellError, match="expected a Cell"):
        SPACE.encode("lstm")  # type: ignore[arg-type]


def test_decode_errors_name_the_parameter() -> None:
    params = SPACE.encode(zoo.get("gru"))
    with pytest.raises(CellError, match="'cell.reset_at' is missing"):
        SPACE.decode({k: v for k, v in params.items() if k != "cell.reset_at"})
    with pytest.raises(CellError, match="'cell.candidate.act' is 'softmax', not one of"):
        SPACE.decode({**params, "cell.candidate.act": "softmax"})
    with pytest.raises(CellError, match=r"not used by this cell: \['cell.peepholes'\]"):
        SPACE.decode({**params, "cell.peepholes": True})
    with pytest.raises(CellError, match="not one of"):
        SPACE.decode({**params, "cell.forget_bias": True})  # a bool is not the number 1
    with pytest.raises(CellError, match="mapping"):
        SPACE.decode([("cell.update", "replace")])  # type: ignore[arg-type]
    # Params of other parts of the study (no prefix) are ignored.
    assert SPACE.decode({**params, "lr": 0.1}).fingerprint == zoo.get("gru").fingerprint


def test_narrowed_space_drops_parameters_and_points() -> None:
    space = GatedSpace(updates=("memory",), gate_activations=("sigmoid",), prefix="arch/")
    params = space.encode(zoo.get("lstm"))
    assert "arch/update" not in params and "arch/input_gate.act" not in params
    assert all(k.startswith("arch/") for k in params)
    assert space.decode(params) == zoo.get("lstm")
    assert zoo.get("gru") not in space


@pytest.mark.parametrize(
    "kwargs",
    [
        {"updates": ()},
        {"updates": ("memory", "memory")},
        {"through": ("conv",)},
        {"forget_biases": (float("nan"),)},
    ],
)
def test_bad_options_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GatedSpace(**kwargs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_points_round_trip(seed: int) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    cell = SPACE.suggest(trial)  # every point is a valid cell
    assert SPACE.decode(trial.params) == cell
    assert SPACE.distributions(trial.params) == trial.distributions
    assert SPACE.decode(SPACE.encode(cell)) == cell

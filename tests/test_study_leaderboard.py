"""leaderboard and seed_study on real studies, with trials written straight to storage."""

from __future__ import annotations

import copy
import math
import random
import statistics

import optuna
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState, create_trial

from optuna_rnn import leaderboard, seed_study
from optuna_rnn.cell import CellError, zoo
from optuna_rnn.spaces import GatedSpace
from optuna_rnn.study import LEADERBOARD_COLUMNS, Leaderboard


def _add(
    study: optuna.Study,
    fingerprint: str | None,
    value: float | None,
    state: TrialState,
    **attrs: object,
) -> None:
    user_attrs = dict(attrs)
    if fingerprint is not None:
        user_attrs.update(
            fingerprint=fingerprint,
            equations=f"h' = {fingerprint}",
            hyperparameters={"learning_rate": value},
        )
    intermediate = {10: -1.0} if state == TrialState.PRUNED else {}
    study.add_trial(
        create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            user_attrs=user_attrs,
            intermediate_values=intermediate,
        )
    )


def _study(direction: str) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for v in (0.5, 0.9, 0.7):
        _add(study, "aaa", v, TrialState.COMPLETE, zoo_name="lstm")
    _add(study, "aaa", None, TrialState.PRUNED, zoo_name="lstm")
    _add(study, "bbb", 0.95, TrialState.COMPLETE, zoo_name=None)
    _add(study, "ccc", None, TrialState.PRUNED)
    _add(study, "ccc", None, TrialState.FAIL)
    _add(study, None, None, TrialState.FAIL)  # failed before its cell was known
    return study


def test_one_row_per_architecture_best_first() -> None:
    board = leaderboard(_study("maximize"))
    assert list(board.columns) == LEADERBOARD_COLUMNS
    assert list(board["fingerprint"]) == ["bbb", "aaa", "ccc"]
    aaa = board.iloc[1]
    assert (aaa["zoo_name"], aaa["best_score"], aaa["median_score"]) == ("lstm", 0.9, 0.7)
    assert (aaa["n_trials"], aaa["n_complete"], aaa["n_pruned"], aaa["n_failed"]) == (4, 3, 1, 0)
    assert aaa["best_trial"] == 1 and aaa["best_params"] == {"learning_rate": 0.9}
    assert aaa["equations"] == "h' = aaa"
    ccc = board.iloc[2]
    assert math.isnan(ccc["best_score"]) and (ccc["n_pruned"], ccc["n_failed"]) == (1, 1)


def test_minimize_puts_the_lowest_score_first() -> None:
    board = leaderboard(_study("minimize"))
    assert list(board["fingerprint"]) == ["aaa", "bbb", "ccc"]
    assert board.iloc[0]["best_score"] == 0.5 and board.iloc[0]["best_trial"] == 0


def test_an_empty_study_has_an_empty_board() -> None:
    board = leaderboard(optuna.create_study())
    assert board.empty and list(board.columns) == LEADERBOARD_COLUMNS


def test_seed_study_enqueues_zoo_cells_with_fixed_hyperparameters() -> None:
    space = GatedSpace()
    study = optuna.create_study(direction="maximize")
    seed_study(study, ["lstm", zoo.get("gru")], space=space, hyperparameters={"learning_rate": 1.0})
    seed_study(study, ["lstm"], space=space)  # other params (no fixed rate): enqueued
    seed_study(study, ["gru"], space=space, hyperparameters={"learning_rate": 1.0})  # skipped
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 3
    fixed = [t.system_attrs["fixed_params"] for t in waiting]
    assert [space.decode(p) for p in fixed] == [zoo.get("lstm"), zoo.get("gru"), zoo.get("lstm")]
    assert [p.get("learning_rate") for p in fixed] == [1.0, 1.0, None]


def test_seed_study_rejects_unknown_names_and_cells_outside_the_space() -> None:
    study = optuna.create_study()
    with pytest.raises(ValueError, match="unknown hyperparameters \\['lr'\\]"):
        seed_study(study, ["gru"], hyperparameters={"lr": 1.0})
    with pytest.raises(CellError, match="unknown zoo cell"):
        seed_study(study, ["no_such_cell"])
    narrow = GatedSpace(updates=("interpolate_old",))
    with pytest.raises(CellError):
        seed_study(study, ["lstm"], space=narrow)


_trial_specs = st.lists(
    st.tuples(
        st.sampled_from(["aaa", "bbb", "ccc", None]),
        st.sampled_from([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]),
        st.sampled_from([0.1, 0.5, 0.9, 2.0]),
    ),
    max_size=25,
)


def _rebuild(trials: list, maximize: bool) -> list[tuple]:
    """The board from scratch, plainly: (fingerprint, best, median, counts, best trial)."""
    rows = []
    for fp in dict.fromkeys(t.user_attrs["fingerprint"] for t in trials if t.user_attrs):
        mine = [t for t in trials if t.user_attrs.get("fingerprint") == fp]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        best = max(done, key=lambda t: (t.value if maximize else -t.value, -t.number), default=None)
        rows.append(
            (
                fp,
                best.value if best else math.inf,
                statistics.median(t.value for t in done) if done else math.inf,
                len(mine),
                [t.state for t in mine].count(TrialState.PRUNED),
                best.number if best else -1,
            )
        )
    return sorted(rows, key=lambda r: (r[1] == math.inf, -r[1] if maximize else r[1]))


@settings(max_examples=40, deadline=None)
@given(_trial_specs, st.sampled_from(["maximize", "minimize"]), st.randoms(), st.integers(1, 4))
def test_an_incremental_board_equals_the_full_rebuild(
    specs: list, direction: str, rng: random.Random, top: int
) -> None:
    """Trials counted one at a time, in any order of finishing (as other workers' trials
    arrive), and some first seen still running, give the board of a full rebuild."""
    study = optuna.create_study(direction=direction)
    for fingerprint, state, value in specs:
        _add(study, fingerprint, value, state)
    trials = study.get_trials()
    order = rng.sample(trials, len(trials))
    board = Leaderboard(study.directions)
    for k, trial in enumerate(order):
        running = copy.deepcopy(trial)
        running.state, running.values = TrialState.RUNNING, None
        board.update([running])  # not counted: not finished
        board.update(order[: k + 1])
        shown = sorted(order[: k + 1], key=lambda t: t.number)
        expected = leaderboard(study, trials=shown)
        pd.testing.assert_frame_equal(board.frame(top), expected.head(top))
        columns = ["best_score", "median_score", "n_trials", "n_pruned", "best_trial"]
        plain = expected[["fingerprint", *columns]].fillna(
            {"best_score": math.inf, "median_score": math.inf, "best_trial": -1}
        )
        assert [tuple(r) for r in plain.itertuples(index=False)] == _rebuild(
            shown, direction == "maximize"
        )
    pd.testing.assert_frame_equal(board.frame(), leaderboard(study))
    assert len(board) == leaderboard(study).shape[0]

"""A real study on SQLite: tiny memorisation, GatedSpace cells, MedianPruner, leaderboard."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_rnn import leaderboard, make_objective, seed_study
from optuna_rnn.cell import zoo
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.tasks.memorization import Memorization


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    path = Path(tmp_path_factory.mktemp("study")) / "rnn.db"
    study = optuna.create_study(
        storage=f"sqlite:///{path}",
        study_name="memorization",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=20),
    )
    seed_study(study, ["lstm", "gru"], hyperparameters={"learning_rate": 1.0})
    hyperparameters = Hyperparameters(
        param_budgets=(1500,),
        layer_counts=(1, 2),
        learning_rates=(0.5, 1.0, 2.0),
        init_scales=(0.7, 1.0),
        max_grad_norms=(5.0,),
    )
    objective = make_objective(
        Memorization(length=3, alphabet=6, eval_size=60),
        hyperparameters=hyperparameters,
        max_steps=60,
        eval_every=20,
        notes=False,
    )
    study.optimize(objective, n_trials=12)
    return optuna.load_study(study_name="memorization", storage=f"sqlite:///{path}")


def test_every_trial_ends_and_some_are_pruned(study: optuna.Study) -> None:
    states = [t.state for t in study.trials]
    assert len(states) == 12 and TrialState.RUNNING not in states
    assert states.count(TrialState.PRUNED) >= 1
    assert states.count(TrialState.COMPLETE) >= 3
    for trial in study.trials:
        assert trial.user_attrs["ended_because"] in {"max_steps", "pruned", "diverged"}
        pruned = trial.user_attrs["ended_because"] == "pruned"
        assert (trial.state == TrialState.PRUNED) == (
            pruned or trial.user_attrs["ended_because"] == "diverged"
        )


def test_seeded_cells_run_first_with_their_fixed_hyperparameters(study: optuna.Study) -> None:
    first, second = study.trials[:2]
    assert (first.user_attrs["zoo_name"], second.user_attrs["zoo_name"]) == ("lstm", "gru")
    assert first.user_attrs["fingerprint"] == zoo.get("lstm").fingerprint
    assert first.params["learning_rate"] == second.params["learning_rate"] == 1.0


def test_leaderboard_matches_the_trials(study: optuna.Study) -> None:
    board = leaderboard(study)
    by_cell: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.trials:
        by_cell.setdefault(trial.user_attrs["fingerprint"], []).append(trial)
    assert sorted(board["fingerprint"]) == sorted(by_cell)
    scored = board.dropna(subset=["best_score"])
    assert list(scored["best_score"]) == sorted(scored["best_score"], reverse=True)
    assert board.iloc[0]["best_score"] == study.best_value
    for row in board.itertuples():
        trials = by_cell[row.fingerprint]
        values = [t.value for t in trials if t.state == TrialState.COMPLETE]
        assert row.n_trials == len(trials)
        assert row.n_pruned == sum(t.state == TrialState.PRUNED for t in trials)
        if values:
            assert row.best_score == max(values)
            assert row.median_score == statistics.median(values)
            best = study.trials[row.best_trial]
            assert best.value == max(values)
            assert row.best_params == best.user_attrs["hyperparameters"]
            assert row.param_count == best.user_attrs["param_count"]
        assert row.equations == trials[0].user_attrs["equations"]

"""Multi-objective studies: the objective returns a tuple, samplers find a Pareto front."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
from _helpers import TASK, TWO_BUDGETS
from optuna.trial import TrialState

from optuna_rnn import (
    CellEvolutionSampler,
    GatedSpace,
    GraphSpace,
    keys,
    make_objective,
    seed_study,
)
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.spaces import CellSpace
from optuna_rnn.tasks.memorization import Memorization


def _objective(**kw: Any):
    settings = {
        "space": GatedSpace(),
        "hyperparameters": TWO_BUDGETS,
        "max_steps": 20,
        "eval_every": 10,
        "backend": "reference",
        "notes": False,
        "objectives": ("score", "param_count"),
    }
    return make_objective(TASK, **{**settings, **kw})


@pytest.mark.parametrize(
    ("sampler", "space"),
    [
        (optuna.samplers.NSGAIISampler(population_size=4, seed=0), GatedSpace()),
        (optuna.samplers.TPESampler(n_startup_trials=4, seed=0), GatedSpace()),
        (CellEvolutionSampler(space=GraphSpace(), population_size=4, seed=0), GraphSpace()),
    ],
    ids=["nsga2", "tpe", "evolution"],
)
def test_a_two_objective_study_completes_with_a_pareto_front(
    sampler: optuna.samplers.BaseSampler, space: CellSpace
) -> None:
    """Gated cells are valid wherever a sampler draws; graph cells where evolution does."""
    objective = _objective(space=space)
    assert objective.directions == ["maximize", "minimize"]
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    seed_study(study, ["lstm", "gru"], space=objective.space)
    study.optimize(objective, n_trials=12)
    states = [t.state for t in study.trials]
    assert len(states) == 12 and TrialState.FAIL not in states
    assert study.metric_names == ["score", "param_count"]
    front = study.best_trials
    assert front
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            attrs = trial.user_attrs
            assert trial.values == [attrs[keys.SCORE], attrs[keys.PARAM_COUNT]]
            assert not trial.intermediate_values  # Optuna cannot prune multi-objective trials
    # No trial on the front is dominated by any complete trial.
    done = study.get_trials(states=(TrialState.COMPLETE,))
    for best in front:
        assert not any(
            t.values[0] >= best.values[0]
            and t.values[1] <= best.values[1]
            and t.values != best.values
            for t in done
        )


def test_tokens_per_second_is_an_objective_and_aliases_resolve() -> None:
    objective = _objective(objectives=("params", "tokens_per_second", "score"))
    assert objective.objectives == ("param_count", "tokens_per_second", "score")
    assert objective.directions == ["minimize", "maximize", "maximize"]
    study = optuna.create_study(directions=objective.directions)
    seed_study(
        study, ["gru"], space=objective.space
    )  # a cell that trains (a random one may diverge)
    study.optimize(objective, n_trials=2)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.values[1] == trial.user_attrs[keys.TOKENS_PER_SECOND] > 0


def test_the_prefilter_replaces_pruning() -> None:
    """A cell under the memorisation threshold ends pruned before the real task trains."""
    objective = _objective(
        prefilter=Memorization(length=3, alphabet=5, eval_size=20), prefilter_threshold=1.01
    )  # unreachable: every trial stops
    study = optuna.create_study(directions=objective.directions)
    seed_study(study, ["gru", "lstm"], space=objective.space)  # cells that train, not diverge
    study.optimize(objective, n_trials=2)
    for trial in study.trials:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs[keys.ENDED_BECAUSE] == "prefilter"
        assert 0.0 <= trial.user_attrs[keys.score_key("memorization")] <= 1.0
    passing = _objective(
        prefilter=Memorization(length=3, alphabet=5, eval_size=20), prefilter_threshold=0.0
    )
    study = optuna.create_study(directions=passing.directions)
    seed_study(study, ["gru"], space=passing.space)
    study.optimize(passing, n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE


def test_a_failing_trial_fails_and_a_wrong_study_is_a_clear_error() -> None:
    objective = _objective()
    with pytest.raises(ValueError, match=r"directions=\['maximize', 'minimize'\]"):
        optuna.create_study(direction="maximize").optimize(objective, n_trials=1)
    with pytest.raises(ValueError, match="objectives must be distinct names"):
        _objective(objectives=("score", "flops"))
    with pytest.raises(ValueError, match="objectives must be distinct names"):
        _objective(objectives=("score", "score"))
    broken = _objective(hyperparameters=Hyperparameters(param_budgets=(1,), layer_counts=(1,)))
    study = optuna.create_study(directions=broken.directions)
    study.optimize(broken, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs[keys.ENDED_BECAUSE] == "failed"
    assert math.isfinite(len(trial.user_attrs[keys.ERROR]))

"""One trial at a time: pruning at a given step, divergence, failures, seeding, settings."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import optuna
import pytest
import torch
from _helpers import SMALL, TASK
from optuna.trial import TrialState

from optuna_rnn import make_objective
from optuna_rnn.cell import Cell, CellError, zoo
from optuna_rnn.hyperparameters import ADAM_LEARNING_RATES, Hyperparameters
from optuna_rnn.spaces import CellSpace
from optuna_rnn.spaces.base import Chooser

BROKEN = "h' = tanh(W x + U q)"  # q is never defined: the cell does not build


class EquationSpace(CellSpace):
    """Picks one of a few cells written as equations (a broken one fails to build)."""

    def __init__(self, equations: dict[str, str]) -> None:
        super().__init__(prefix="eq.")
        self.equations = equations

    def _program(self, choose: Chooser) -> Cell:
        return Cell.parse(self.equations[choose("name", tuple(self.equations))])

    def encode(self, cell: Cell) -> dict[str, Any]:
        for name, text in self.equations.items():
            with contextlib.suppress(CellError):
                if Cell.parse(text) == cell:
                    return {self.prefix + "name": name}
        raise CellError("the cell is not in this space")


class PruneAt(optuna.pruners.BasePruner):
    """Prunes once a trial has reported a value at ``step`` or later."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


SPACE = EquationSpace({"gru": str(zoo.get("gru")), "tanh": str(zoo.get("tanh")), "broken": BROKEN})


def _objective(**kw: Any):
    settings = {
        "space": SPACE,
        "hyperparameters": SMALL,
        "max_steps": 60,
        "eval_every": 20,
        "backend": "reference",
        "notes": False,
    }
    return make_objective(TASK, **{**settings, **kw})


def _run(cells: list[str], *, pruner: optuna.pruners.BasePruner | None = None, **kw: Any):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for name in cells:
        study.enqueue_trial({"eq.name": name})
    study.optimize(_objective(**kw), n_trials=len(cells))
    return study


def test_a_pruner_stops_the_trial_at_its_step() -> None:
    study = _run(["gru"], pruner=PruneAt(40))
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [20, 40]
    assert trial.user_attrs["ended_because"] == "pruned"
    # The intermediate values are validation losses, negated in a maximize study.
    assert all(v < 0 for v in trial.intermediate_values.values())


def test_a_huge_learning_rate_ends_pruned_as_diverged() -> None:
    hp = Hyperparameters(param_budgets=(1500,), layer_counts=(1,), learning_rates=(1e6,))
    study = _run(["gru"], hyperparameters=hp)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["ended_because"] == "diverged"
    assert "training loss" in trial.user_attrs["error"]


def test_a_cell_that_fails_to_build_fails_and_the_study_goes_on() -> None:
    study = _run(["broken", "tanh"])
    failed, after = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["ended_because"] == "failed"
    assert failed.user_attrs["error"].startswith("CellError: line 1: undefined name 'q'")
    assert after.state == TrialState.COMPLETE
    assert after.user_attrs["ended_because"] == "max_steps"


def test_errors_outside_catch_are_raised_after_recording_them() -> None:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"eq.name": "broken"})
    with pytest.raises(CellError):
        study.optimize(_objective(catch=()), n_trials=1)
    assert study.trials[0].state == TrialState.FAIL
    assert "undefined name" in study.trials[0].user_attrs["error"]


def test_a_completed_trial_records_its_model_and_scores() -> None:
    study = _run(["gru"])
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert trial.state == TrialState.COMPLETE
    assert trial.value == attrs["score"] and 0 <= trial.value <= 1
    assert 0 <= attrs["test_score"] <= 1
    assert attrs["fingerprint"] == zoo.get("gru").fingerprint
    assert attrs["zoo_name"] == "gru" and attrs["equations"] == str(zoo.get("gru"))
    assert abs(attrs["param_count"] - 1500) <= 0.1 * 1500
    assert attrs["width"] >= 1 and attrs["tokens_per_second"] > 0
    assert attrs["hyperparameters"] == {
        "init_scale": 1.0,
        "learning_rate": 1.0,
        "max_grad_norm": 5.0,
        "num_layers": 1,
        "param_budget": 1500,
        "dropout": 0.0,
    }
    # Single-choice hyperparameters are not parameters; the cell's choice is.
    assert trial.params == {"eq.name": "gru"}
    assert sorted(trial.intermediate_values) == [20, 40, 60]


def test_same_seed_same_trial() -> None:
    values = [_run(["tanh"], seed=7).trials[0] for _ in range(2)]
    assert values[0].value == values[1].value
    assert values[0].intermediate_values == values[1].intermediate_values


def test_the_study_direction_must_match_the_task() -> None:
    study = optuna.create_study(direction="minimize")
    with pytest.raises(ValueError, match="direction='maximize'"):
        study.optimize(_objective(), n_trials=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rates", ()),
        ("layer_counts", (0,)),
        ("dropouts", (1.0,)),
        ("param_budgets", (1.5,)),
    ],
)
def test_bad_hyperparameter_choices_are_an_error(field: str, value: tuple) -> None:
    with pytest.raises(ValueError, match=field):
        Hyperparameters(**{field: value})


def test_bad_training_settings_are_an_error_at_once() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        _objective(optimizer="rmsprop")
    with pytest.raises(ValueError, match="torch_threads"):
        _objective(torch_threads=0)


def test_adam_gets_its_own_learning_rates() -> None:
    objective = make_objective(TASK, space=SPACE, optimizer="adam", notes=False)
    assert max(objective.hyperparameters.learning_rates) <= 1e-2
    assert math.isclose(min(Hyperparameters().learning_rates), 0.1)


def test_a_partial_hyperparameter_setting_keeps_the_optimizers_other_lists() -> None:
    """Issue 23: a partial setting replaced the Adam defaults with the SGD rates."""
    budgets = {"param_budgets": [1500], "layer_counts": [1]}
    adam = _objective(optimizer="adam", hyperparameters=budgets, max_steps=2)
    assert adam.hyperparameters.learning_rates == ADAM_LEARNING_RATES
    assert list(adam.hyperparameters.param_budgets) == [1500]
    sgd = _objective(hyperparameters=budgets)
    assert sgd.hyperparameters.learning_rates == Hyperparameters().learning_rates
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(adam, n_trials=3)
    drawn = {t.params["learning_rate"] for t in study.trials if "learning_rate" in t.params}
    assert drawn and drawn <= set(ADAM_LEARNING_RATES)
    with pytest.raises(ValueError, match=r"unknown hyperparameter lists \['learning_rate'\]"):
        _objective(hyperparameters={"learning_rate": [0.1]})


def test_the_time_budget_ends_a_trial_complete_and_threads_are_set() -> None:
    torch.set_num_threads(2)
    study = _run(["gru"], max_seconds=0.0, torch_threads=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert (trial.user_attrs["ended_because"], trial.user_attrs["steps"]) == ("time_limit", 1)
    assert list(trial.intermediate_values) == [1]
    assert torch.get_num_threads() == 1

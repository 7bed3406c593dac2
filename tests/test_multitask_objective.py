"""The paper's objective stages in real (tiny) studies: pre-filter, first-task cut,
min over tasks of the ratio to the GRU, and perplexity's ratio turned around."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from _helpers import SMALL
from optuna.trial import TrialState

from optuna_rnn import make_multitask_objective
from optuna_rnn.cell import zoo
from optuna_rnn.multitask import ratio_key, score_key
from optuna_rnn.spaces import GraphSpace
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.tasks.text import TextFile

SPACE = GraphSpace(max_nodes=24)
SETTINGS = {
    "space": SPACE,
    "hyperparameters": SMALL,
    "max_steps": 40,
    "eval_every": 20,
    "backend": "reference",
    "notes": False,
}


def _memorization(name: str, length: int) -> Memorization:
    task = Memorization(length=length, alphabet=6, eval_size=40)
    task.name = name
    return task


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> TextFile:
    path = Path(tmp_path_factory.mktemp("text")) / "abc.txt"
    path.write_text("the cat sat on the mat. " * 60)
    return TextFile(path, bptt=10)


def _study(cells: list[str]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for name in cells:
        study.enqueue_trial(SPACE.encode(zoo.get(name)))
    return study


def test_min_ratio_over_tasks_with_perplexity_turned_around(text: TextFile) -> None:
    tasks = [_memorization("mem2", 3), text]
    objective = make_multitask_objective(
        tasks, prefilter=None, first_task_threshold=None, **SETTINGS
    )
    study = _study(["gru", "tanh"])
    study.optimize(objective, n_trials=2)
    gru, tanh = study.trials
    assert gru.state == tanh.state == TrialState.COMPLETE
    for task in tasks:
        assert gru.user_attrs[ratio_key(task)] == 1.0  # the reference's best is itself
    acc = tanh.user_attrs[score_key(tasks[0])] / gru.user_attrs[score_key(tasks[0])]
    ppl = gru.user_attrs[score_key(text)] / tanh.user_attrs[score_key(text)]
    assert tanh.user_attrs[ratio_key(tasks[0])] == pytest.approx(acc)
    assert tanh.user_attrs[ratio_key(text)] == pytest.approx(ppl)
    assert tanh.value == pytest.approx(min(acc, ppl))
    assert tanh.user_attrs["score"] == tanh.value
    # Each stage reports its losses at its own steps, so pruners compare like with like.
    assert sorted(tanh.intermediate_values) == [20, 40, 61, 81]


def test_prefilter_prunes_a_cell_that_misses_the_threshold() -> None:
    objective = make_multitask_objective(
        [_memorization("mem2", 3)],
        prefilter=_memorization("filter", 4),
        prefilter_threshold=1.01,
        **SETTINGS,
    )
    study = _study(["gru"])
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["ended_because"] == "prefilter"
    assert 0 <= trial.user_attrs["score_filter"] <= 1
    assert "score_mem2" not in trial.user_attrs


def test_first_task_cut_and_missing_reference() -> None:
    task = _memorization("mem2", 3)
    objective = make_multitask_objective(
        [task, _memorization("mem3", 4)],
        prefilter=None,
        first_task_threshold=5.0,
        **SETTINGS,
    )
    study = _study(["tanh", "gru"])
    study.optimize(objective, n_trials=2)
    no_reference, gru = study.trials
    assert no_reference.state == TrialState.PRUNED
    assert no_reference.user_attrs["ended_because"] == "no_reference"
    # The GRU is at 1.0 of itself, under the threshold of 5: cut after the first task.
    assert gru.user_attrs["ended_because"] == "first_task"
    assert "score_mem3" not in gru.user_attrs


def test_reference_scores_replace_the_study() -> None:
    task = _memorization("mem2", 3)
    objective = make_multitask_objective(
        [task],
        prefilter=None,
        first_task_threshold=None,
        reference_scores={"mem2": 0.5},
        **SETTINGS,
    )
    study = _study(["tanh"])
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.value == pytest.approx(trial.user_attrs["score_mem2"] / 0.5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tasks": []}, "at least one task"),
        ({"tasks": ["same", "same"]}, "distinct"),
        ({"reference_scores": {"nope": 1.0}}, "not in tasks"),
    ],
)
def test_bad_arguments_are_named(kwargs, match) -> None:
    names = kwargs.pop("tasks", ["a"])
    tasks = [_memorization(n, 3) for n in names]
    with pytest.raises(ValueError, match=match):
        make_multitask_objective(tasks, prefilter=None, **kwargs, **SETTINGS)


def test_a_minimize_study_is_refused() -> None:
    objective = make_multitask_objective([_memorization("m", 3)], prefilter=None, **SETTINGS)
    study = optuna.create_study(direction="minimize")
    with pytest.raises(ValueError, match="maximize"):
        study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.FAIL

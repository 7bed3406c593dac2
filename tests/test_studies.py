"""The study scripts: presets that fit their stated bounds, and runs that resume."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from _helpers import STUDIES, TINY_OBJECTIVE, TINY_TASK
from optuna.trial import TrialState

from optuna_rnn.cli.spec import SearchSpec
from optuna_rnn.objective import Hyperparameters

#: Seconds a trial takes beyond its max_seconds (final validation, test, model build),
#: measured on the cpu presets' smoke runs (docs/guides/reproduction.md).
OVERHEAD = {"ptb": 25.0}
DEFAULT_OVERHEAD = 15.0
CPU_LIMIT_SECONDS = 2 * 3600
BASELINE_SCRIPTS = ("table2", "forget_bias", "gates")


def _task_objectives(preset: dict) -> dict[str, dict]:
    return {
        label: {**preset["objective"], **preset.get("task_objective", {}).get(label, {})}
        for label in preset["tasks"]
    }


@pytest.mark.parametrize("script", BASELINE_SCRIPTS)
def test_cpu_baselines_hold_ten_draws_and_finish_in_two_hours(
    study_scripts: object, script: str
) -> None:
    preset = study_scripts(script).PRESETS["cpu"]
    assert preset["draws"] >= 10
    cells = preset.get("cells") or study_scripts(script).CELLS
    for label, objective in _task_objectives(preset).items():
        trials = len(cells) * preset["draws"]
        overhead = OVERHEAD.get(label, DEFAULT_OVERHEAD)
        bound = trials * (objective["max_seconds"] + overhead) / 2
        assert bound <= CPU_LIMIT_SECONDS, (script, label, bound)
        # Adam with every choice list given: a partial list must not bring SGD's rates in.
        assert objective["optimizer"] == "adam"
        rates = Hyperparameters(**objective["hyperparameters"]).learning_rates
        assert max(rates) <= 0.01


def test_cpu_evolution_searches_for_at_most_three_hours(study_scripts: object) -> None:
    preset = study_scripts("evolution").PRESETS["cpu"]
    stages = 1 + len(preset["tasks"])  # the memorisation pre-filter, then each task
    bound = preset["n_trials"] * (stages * preset["objective"]["max_seconds"] + 50) / 2
    assert bound <= 3 * 3600


@pytest.mark.parametrize("script", [*BASELINE_SCRIPTS, "evolution"])
def test_paper_presets_train_with_the_papers_sgd_choice_lists(
    study_scripts: object, script: str
) -> None:
    preset = study_scripts(script).PRESETS["paper"]
    objective = preset["objective"]
    assert objective["optimizer"] == "sgd"
    hyperparameters = Hyperparameters(**objective.get("hyperparameters", {}))
    assert hyperparameters.learning_rates == Hyperparameters().learning_rates
    assert hyperparameters.init_scales == Hyperparameters().init_scales
    assert objective["max_steps"] == 20000
    if script != "evolution":
        assert preset["draws"] == 20


def test_the_ptb_cpu_preset_learns_with_one_layer_at_1m_parameters(study_scripts: object) -> None:
    objective = _task_objectives(study_scripts("table2").PRESETS["cpu"])["ptb"]
    hyperparameters = Hyperparameters(**objective["hyperparameters"])
    assert tuple(hyperparameters.layer_counts) == (1,)
    assert tuple(hyperparameters.param_budgets) == (1_000_000,)
    SearchSpec(tasks=("ptb",), sampler="random", pruner="none", objective=objective)


def _finished(storage: str, name: str) -> list[int]:
    study = optuna.load_study(study_name=name, storage=storage)
    return [
        t.number
        for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    ]


def test_a_stopped_study_continues_rather_than_starting_again(
    study_scripts: object, tmp_path: Path
) -> None:
    common, forget_bias = study_scripts("_common"), study_scripts("forget_bias")
    presets = {
        "tiny": {
            "tasks": {"arithmetic": TINY_TASK, "xml": TINY_TASK + ",seed=1"},
            "draws": 2,
            "objective": TINY_OBJECTIVE,
        }
    }
    storage = f"sqlite:///{tmp_path}/fb.sqlite3"
    argv = [
        "--preset",
        "tiny",
        "--storage",
        storage,
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
    ]
    # Stopped after the first study: the second exists with its draws but none ran.
    common.main("fb", "", presets, forget_bias.run, [*argv, "--only", "arithmetic"])
    first = _finished(storage, "fb-tiny-arithmetic")
    assert len(first) == 6 and _finished(storage, "fb-tiny-xml") == []
    common.main("fb", "", presets, forget_bias.run, argv)
    assert _finished(storage, "fb-tiny-arithmetic") == first  # nothing ran again
    assert len(_finished(storage, "fb-tiny-xml")) == 6
    out = tmp_path / "out"
    findings = pd.read_csv(out / "findings.csv")
    assert set(findings["task"]) == {"arithmetic", "xml"}
    assert (findings["n_draws"] == 2).all()
    orderings = pd.read_csv(out / "orderings.csv")
    assert {"LSTM-b above LSTM", "LSTM-b near GRU", "GRU above LSTM"} == set(orderings["ordering"])
    assert orderings["probability"].between(0, 1).all()
    assert (out / "findings-arithmetic.png").exists() and (out / "xml" / "leaderboard.csv").exists()


def test_the_default_storage_and_results_are_not_git_ignored(study_scripts: object) -> None:
    common = study_scripts("_common")
    root = STUDIES.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (common.RUNS / "table2-cpu.sqlite3", common.RUNS / "table2-cpu" / "findings.csv"):
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=root, check=False)
        assert ignored.returncode == 1, f"{path} is git-ignored"


def test_the_evolution_study_retrains_its_best_cells_on_the_test_splits(
    study_scripts: object, tmp_path: Path
) -> None:
    common, evolution = study_scripts("_common"), study_scripts("evolution")
    objective = {**TINY_OBJECTIVE, "prefilter": False, "seed": 3}
    presets = {
        "tiny": {
            "tasks": ("arithmetic:tiny,eval_size=40", "xml:tiny,eval_size=40"),
            "n_trials": 8,
            "population_size": 3,
            "seed_draws": 1,
            "pruner": "none",
            "objective": objective,
            "retrain": {"cells": 2, "seeds": 2},
        }
    }
    storage, out = f"sqlite:///{tmp_path}/evo.sqlite3", tmp_path / "out"
    argv = ["--preset", "tiny", "--storage", storage, "--out", str(out), "--workers", "1"]
    common.main("evo", "", presets, evolution.run, argv)
    search = optuna.load_study(study_name="evo-tiny-search", storage=storage)
    spec = SearchSpec.from_study(search)
    scores = evolution.final_scores(search, spec)
    gru_scores = [s for n, s in scores.items() if search.trials[n].user_attrs["zoo_name"] == "gru"]
    assert max(gru_scores) == 1.0  # the reference's best draw, against itself
    chosen = evolution.best_trials(search, scores, 2)
    assert all(not t.user_attrs.get("zoo_name") for t in chosen)
    ratios = pd.read_csv(out / "retrain.csv")
    assert set(ratios["task"]) == {"arithmetic", "xml", "min"}
    assert set(ratios["rank"].dropna().astype(int)) == set(range(1, len(chosen) + 2))
    gru = ratios[ratios["cell"] == "gru"]
    assert (gru["ratio"] == 1.0).all()  # the reference's ratio to itself
    for task in ("arithmetic", "xml"):
        retrained = optuna.load_study(study_name=f"evo-tiny-retrain-{task}", storage=storage)
        trials = retrained.get_trials(states=(TrialState.COMPLETE,))
        assert len(trials) == 2 * (len(chosen) + 1)
        # Each retrained trial is a search trial's cell and hyperparameters, with a fresh seed
        # and a test score.
        for trial in trials:
            source = search.trials[trial.user_attrs["retrain_of"]]
            assert trial.params == source.params
            assert "test_score" in trial.user_attrs
    # Once more with every cell at the GRU's hyperparameters.
    gru = evolution.best_trials(search, scores, 1, cells=("gru",))[0]
    same = optuna.load_study(study_name="evo-tiny-retrain-gru-settings-xml", storage=storage)
    for trial in same.get_trials(states=(TrialState.COMPLETE,)):
        assert trial.user_attrs["hyperparameters"] == gru.user_attrs["hyperparameters"]
    assert set(pd.read_csv(out / "retrain-gru-settings.csv")["task"]) == {
        "arithmetic",
        "xml",
        "min",
    }
    assert (out / "cell-1.svg").read_text().startswith("<svg")
    assert "search trial" in (out / "cells.md").read_text()
    # Run again: nothing trains twice.
    common.main("evo", "", presets, evolution.run, argv)
    again = optuna.load_study(study_name="evo-tiny-retrain-xml", storage=storage)
    assert len(again.trials) == 2 * (len(chosen) + 1)

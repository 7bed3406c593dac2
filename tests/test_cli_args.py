"""optuna-rnn's help and its answers to bad arguments (exit status 2 and a message)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optuna_rnn.cli import build_parser, main
from optuna_rnn.cli.args import spec_from_args
from optuna_rnn.cli.spec import SearchSpec, parse_task

COMMANDS = ("search", "worker", "baselines", "leaderboard", "show", "export")


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: optuna-rnn {command}") and "--storage" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["serach"], "invalid choice: 'serach'"),
        (["search", "--task", "sudoku"], "unknown task 'sudoku'"),
        (["search", "--task", "arithmetic:small,digits"], "expected KEY=VALUE"),
        (["search", "--workers", "0"], "--workers: must be a positive int, got '0'"),
        (["search", "--n-trials", "many"], "--n-trials: must be a positive int, got 'many'"),
        (["search", "--storage", "redis://host"], "is not one of sqlite:///FILE"),
        (["search", "--sampler", "cmaes"], "invalid choice: 'cmaes'"),
        (["search", "--seed-cells", "lstm,lstmm"], "unknown zoo cells ['lstmm']"),
        (["search", "--seed-cells", "lstm,gru", "--n-trials", "1"], "smaller than the 2 seeded"),
        (["search", "--set", "max_steps"], "expected KEY=VALUE"),
        (["search", "--sampler", "tpe", "--aging"], "set the evolution sampler"),
        (["search", "--population-size", "0"], "--population-size: must be a positive int"),
        (["search", "--n-startup-trials", "-1"], "--n-startup-trials: must be a non-negative"),
        (["search", "--sampler", "tpe", "--n-startup-trials", "0"], "set the evolution sampler"),
        (["search", "--sampler", "random", "--any-cell"], "set the evolution sampler"),
        (["search", "--grace-period", "5", "--heartbeat-interval", "10"], "must exceed"),
        (["baselines", "--n-trials", "3"], "unrecognized arguments: --n-trials"),
        (["show"], "name a cell"),
        (["show", "lstm", "--trial", "0"], "name a cell"),
        (["show", "no_such_cell"], "neither a zoo cell"),
        (["export"], "--out"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the default storage lands here, if anywhere
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_or_ambiguous_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    url = f"sqlite:///{tmp_path}/two.db"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=url)
    for argv, message in [
        (
            ["leaderboard", "--storage", url],
            "--study-name is needed; " + url + " holds studies: a, b",
        ),
        (["leaderboard", "--storage", url, "--study-name", "c"], "no study 'c'"),
        (
            ["worker", "--storage", url, "--study-name", "a"],
            "was not created by `optuna-rnn search`",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_spec_round_trips_through_json() -> None:
    spec = SearchSpec(
        tasks=("arithmetic:small,eval_size=200", "xml"),
        sampler="tpe",
        seed=7,
        objective={"max_steps": 10},
    )
    assert SearchSpec.from_json(spec.to_json()) == spec
    assert spec.space == "gated" and SearchSpec().space == "graph"  # evolution mutates graphs
    assert parse_task("arithmetic:small,eval_size=200,negatives=false") == (
        "arithmetic",
        "small",
        {"eval_size": 200, "negatives": False},
    )


def test_console_script_module_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "optuna_rnn.cli", "show", "gru"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "h' = " in done.stdout


def test_spec_builds_the_library_objects() -> None:
    from optuna_rnn import CellEvolutionSampler, GraphSpace
    from optuna_rnn.hyperparameters import ADAM_LEARNING_RATES, Hyperparameters
    from optuna_rnn.multitask import MultitaskObjective
    from optuna_rnn.objective import CellObjective

    single = SearchSpec(
        tasks=("arithmetic:tiny",),
        sampler="random",
        objective={"max_steps": 5, "hyperparameters": {"layer_counts": [1]}},
    )
    objective = single.build_objective()
    assert isinstance(objective, CellObjective)
    assert objective.hyperparameters == Hyperparameters(layer_counts=[1])
    # A partial setting replaces only the lists it names: Adam keeps its learning rates.
    adam = SearchSpec(
        tasks=("arithmetic:tiny",),
        sampler="random",
        objective={"optimizer": "adam", "hyperparameters": {"param_budgets": [500_000]}},
    )
    assert adam.build_objective().hyperparameters == Hyperparameters(
        learning_rates=ADAM_LEARNING_RATES, param_budgets=[500_000]
    )
    several = SearchSpec(tasks=("xml:tiny", "arithmetic:tiny"), objective={"prefilter": False})
    assert isinstance(several.build_objective(), MultitaskObjective)
    assert several.direction() == "maximize"
    assert isinstance(several.build_sampler(0), CellEvolutionSampler)
    assert isinstance(several.build_space(), GraphSpace)
    with pytest.raises(ValueError, match="task 'xml:tiny,colour=1'"):
        SearchSpec(tasks=("xml:tiny,colour=1",)).build_tasks()


def test_spec_objectives_resolve_and_bad_combinations_are_errors() -> None:
    spec = SearchSpec(tasks=("arithmetic:tiny",), objectives=["score", "params"])
    assert spec.objectives == ("score", "param_count") and spec.pruner == "none"
    assert spec.directions() == ["maximize", "minimize"]
    assert SearchSpec.from_json(spec.to_json()) == spec
    assert SearchSpec().pruner == "median" and SearchSpec().directions() == ["maximize"]
    old = json.loads(SearchSpec().to_json())
    del old["objectives"]  # a spec stored before objectives existed
    assert SearchSpec.from_json(json.dumps(old)).same_search(SearchSpec())
    with pytest.raises(ValueError, match="single task"):
        SearchSpec(tasks=("xml:tiny", "arithmetic:tiny"), objectives=("score", "params"))
    with pytest.raises(ValueError, match="cannot prune"):
        SearchSpec(objectives=("score", "params"), pruner="median")
    with pytest.raises(ValueError, match="objectives must be distinct names"):
        SearchSpec(objectives=("score", "flops"))


def test_evolution_options_reach_the_sampler() -> None:
    from optuna_rnn.samplers import AgingPopulation

    spec = SearchSpec(population_size=7, aging=True, tournament_size=3, n_startup_trials=2)
    assert SearchSpec.from_json(spec.to_json()) == spec
    sampler = spec.build_sampler(0)
    assert isinstance(sampler._population, AgingPopulation) and sampler._population.size == 7
    assert sampler._selection.size == 3
    assert sampler._n_startup_trials == 2
    old = json.loads(SearchSpec().to_json())
    del old["n_startup_trials"]  # a spec stored before the option existed: the default
    assert SearchSpec.from_json(json.dumps(old)).build_sampler(0)._n_startup_trials == 5
    argv = ["search", "--population-size", "7", "--aging", "--tournament-size", "3"]
    args = build_parser().parse_args([*argv, "--n-startup-trials", "2"])
    assert spec_from_args(args, seed=0) == spec


def test_any_cell_lets_evolution_propose_cells_that_cannot_remember() -> None:
    from optuna_rnn.cell import live

    assert SearchSpec().build_sampler(0)._viable is live
    spec = spec_from_args(build_parser().parse_args(["search", "--any-cell"]), seed=0)
    assert spec.any_cell and SearchSpec.from_json(spec.to_json()) == spec
    assert spec.build_sampler(0)._viable is None
    old = json.loads(SearchSpec().to_json())
    del old["any_cell"]  # a spec stored before the option existed: the default
    assert SearchSpec.from_json(json.dumps(old)).build_sampler(0)._viable is live

"""The optuna-rnn commands on real studies: search, resume, baselines, leaderboard, show, export."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from _helpers import TINY_TASK, tiny_cli_args, tiny_search_argv
from optuna.trial import TrialState

from optuna_rnn.cell import Cell, zoo
from optuna_rnn.cli import main
from optuna_rnn.cli.spec import SPEC_ATTR, SearchSpec

#: A task and objective small enough for a trial in a few seconds on 2 cores.
TINY = [*tiny_cli_args(), "--no-progress"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A finished 4-trial random search on SQLite: (storage URL, study name)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli')}/runs.db"
    assert main(tiny_search_argv(url, "--seed", "3", "--study-name", "tiny")) == 0
    return url, "tiny"


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def test_search_runs_the_requested_trials_and_prints_the_leaderboard(
    searched: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(*searched)
    assert len(study.trials) == 4
    assert all(t.state.is_finished() for t in study.trials)
    # seed cells first, then the sampler's; the recipe is in the study for workers
    assert [t.user_attrs.get("zoo_name") for t in study.trials[:2]] == ["lstm", "gru"]
    spec = SearchSpec.from_json(study.user_attrs[SPEC_ATTR])
    assert spec.n_trials == 4 and spec.space == "gated" and spec.sampler == "random"
    assert main(["leaderboard", "--storage", searched[0]]) == 0
    out = capsys.readouterr().out
    assert "best_score" in out and "lstm" in out and "gru" in out


def test_rerunning_a_search_resumes_it(searched: tuple[str, str]) -> None:
    url, name = searched
    argv = ["search", *TINY, "--sampler", "random", "--storage", url, "--study-name", name]
    assert main([*argv, "--n-trials", "4"]) == 0
    assert len(_study(url, name).trials) == 4  # already complete: nothing ran
    assert main([*argv, "--n-trials", "5"]) == 0
    study = _study(url, name)
    assert len(study.trials) == 5
    assert SearchSpec.from_json(study.user_attrs[SPEC_ATTR]).n_trials == 5


def test_a_different_search_under_the_same_name_is_refused(
    searched: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, name = searched
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *TINY, "--sampler", "tpe", "--storage", url, "--study-name", name])
    assert exit_info.value.code == 2
    assert "already runs a different search" in capsys.readouterr().err


def test_leaderboard_formats(searched: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url, name = searched
    main(["leaderboard", "--storage", url, "--study-name", name, "--format", "csv"])
    rows = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert {"fingerprint", "best_score", "equations"} <= set(rows.columns)
    best = rows["best_score"].dropna()
    assert list(best) == sorted(best, reverse=True)  # memorization: higher is better
    main(
        [
            "leaderboard",
            "--storage",
            url,
            "--study-name",
            name,
            "--format",
            "markdown",
            "--top",
            "2",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| fingerprint") and len(lines) == 4


def test_show_a_trials_cell_as_equations_and_svg(
    searched: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, name = searched
    assert main(["show", "--trial", "1", "--storage", url, "--study-name", name]) == 0
    out = capsys.readouterr().out
    assert Cell.parse(out).fingerprint == zoo.get("gru").fingerprint
    assert "(zoo: gru)" in out
    svg = tmp_path / "gru.svg"
    assert main(["show", "--trial", "1", "--storage", url, "--svg", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith(("<svg", "<?xml"))


def test_show_a_zoo_cell_and_an_equations_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "mut1"]) == 0
    assert Cell.parse(capsys.readouterr().out) == zoo.get("mut1")
    path = tmp_path / "cell.txt"
    path.write_text("h' = tanh(Wx x + Wh h + b)\n")
    assert main(["show", str(path)]) == 0
    assert "(zoo: tanh)" in capsys.readouterr().out


def test_export_writes_tables_and_plots(searched: tuple[str, str], tmp_path: Path) -> None:
    url, name = searched
    out = tmp_path / "export"
    assert main(["export", "--storage", url, "--study-name", name, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "trials.csv",
        "leaderboard.csv",
        "leaderboard.md",
        "leaderboard.png",
        "history.png",
    } <= names
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == len(_study(url, name).trials)
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "leaderboard.md").read_text().startswith("| fingerprint")


def test_baselines_give_each_cell_its_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    argv = [
        "baselines",
        *TINY,
        "--cells",
        "lstm,gru",
        "--draws",
        "2",
        "--seed",
        "0",
        "--storage",
        url,
    ]
    assert main(argv) == 0
    study = _study(url, "baselines-" + TINY_TASK)
    assert len(study.trials) == 4
    assert sorted(t.user_attrs["zoo_name"] for t in study.trials) == ["gru", "gru", "lstm", "lstm"]
    draws: dict[str, list[str]] = {}
    for t in study.trials:
        setting = json.dumps(t.user_attrs.get("hyperparameters"), sort_keys=True)
        draws.setdefault(t.user_attrs["zoo_name"], []).append(setting)
    assert len(set(draws["lstm"])) == 2  # each draw its own hyperparameter setting,
    assert draws["gru"] == draws["lstm"]  # the same for every cell (a paired design)
    assert "lstm" in capsys.readouterr().out


def test_a_two_objective_search_and_its_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/multi.db"
    argv = tiny_search_argv(
        url, "--objectives", "score,params", "--seed", "0", "--study-name", "multi", sampler="tpe"
    )
    assert main(argv) == 0
    assert "Pareto front of score, param_count: trials [" in capsys.readouterr().out
    study = _study(url, "multi")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["score", "param_count"]
    assert all(t.state == TrialState.COMPLETE for t in study.trials) and study.best_trials
    spec = SearchSpec.from_study(study)
    assert spec.objectives == ("score", "param_count") and spec.pruner == "none"
    out = tmp_path / "export"
    assert main(["export", "--storage", url, "--study-name", "multi", "--out", str(out)]) == 0
    assert (out / "pareto_front.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main([*argv, "--pruner", "median", "--study-name", "other"])
    assert "Optuna cannot prune multi-objective trials" in capsys.readouterr().err

"""optuna-dashboard, served in this process, shows the cell attrs, notes and SVG diagrams."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from _helpers import SMALL, TASK, TWO_BUDGETS
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState, create_trial
from optuna_dashboard import get_note, wsgi

from optuna_rnn import keys, leaderboard, make_objective, seed_study
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.cell.render import render_svg
from optuna_rnn.dashboard import LeaderboardNote, leaderboard_markdown

TRIAL_ATTRS = {
    "equations",
    "fingerprint",
    "zoo_name",
    "param_count",
    "width",
    "score",
    "test_score",
    "tokens_per_second",
    "ended_because",
}


def _get(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "GET",
        "wsgi.input": io.BytesIO(),
    }
    setup_testing_defaults(environ)
    reply: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        reply.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return reply["status"], reply["headers"], body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, optuna.Study]:
    root = Path(tmp_path_factory.mktemp("dashboard"))
    storage = optuna.storages.RDBStorage(f"sqlite:///{root / 'rnn.db'}")
    study = optuna.create_study(
        storage=storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    seed_study(study, ["gru", "mut1"])
    objective = make_objective(
        TASK,
        # One modest learning rate: both trials must complete (not diverge) to be checked.
        hyperparameters=dataclasses.replace(SMALL, learning_rates=(0.5,)),
        max_steps=20,
        eval_every=10,
        backend="reference",
        artifact_store=root / "artifacts",
    )
    study.optimize(objective, n_trials=2)
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(root / "artifacts"))
    return app, study


def _detail(served: tuple[Any, optuna.Study]) -> dict[str, Any]:
    app, study = served
    status, _, body = _get(app, f"/api/studies/{study._study_id}")
    assert status.startswith("200")
    return json.loads(body)


def test_trials_carry_the_cell_and_its_results(served: tuple[Any, optuna.Study]) -> None:
    trials = _detail(served)["trials"]
    assert len(trials) == 2
    for trial, name in zip(trials, ["gru", "mut1"], strict=True):
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert TRIAL_ATTRS <= set(attrs)
        assert attrs["zoo_name"] == name and attrs["fingerprint"] == zoo.get(name).fingerprint
        assert Cell.parse(attrs["equations"]) == zoo.get(name)
        note = trial["note"]["body"]
        assert f"Trial {trial['number']}: {name}" in note and attrs["equations"] in note


def test_the_cell_diagram_downloads_as_svg(served: tuple[Any, optuna.Study]) -> None:
    app, study = served
    for trial in _detail(served)["trials"]:
        equations = next(a["value"] for a in trial["user_attrs"] if a["key"] == "equations")
        (artifact,) = [a for a in trial["artifacts"] if a["filename"].endswith(".svg")]
        assert artifact["mimetype"] == "image/svg+xml"
        url = f"/artifacts/{study._study_id}/{trial['trial_id']}/{artifact['artifact_id']}"
        assert f"![cell diagram]({url})" in trial["note"]["body"]
        status, headers, body = _get(app, url)
        assert status.startswith("200") and headers["Content-Type"] == "image/svg+xml"
        assert body.decode() == render_svg(Cell.parse(equations))


def test_the_study_note_holds_the_leaderboard(served: tuple[Any, optuna.Study]) -> None:
    _, study = served
    note = _detail(served)["note"]["body"]
    assert note.startswith("## Leaderboard (2 architectures)")
    rows = [line for line in note.splitlines() if line.startswith("| ") and "cell" not in line]
    assert len(rows) == 2
    best = study.best_trial.user_attrs["zoo_name"]
    assert rows[0].startswith(f"| {best} | {study.best_value:.4g} |")


def test_the_note_kept_trial_by_trial_equals_a_full_rebuild(tmp_path: Path) -> None:
    """LeaderboardNote counts only new trials, other workers' included, yet writes what a
    rebuild from every trial writes."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'note.db'}")
    study = optuna.create_study(storage=storage, direction="minimize")
    note = LeaderboardNote(top=3)
    cells = ["aaa", "bbb", "ccc", "ddd", "aaa", "bbb"]
    calls = itertools.count()

    def objective(trial: optuna.Trial) -> float:
        call = next(calls)
        fingerprint = cells[call % len(cells)]
        trial.set_user_attr(keys.FINGERPRINT, fingerprint)
        trial.set_user_attr(keys.EQUATIONS, f"h' = {fingerprint}")
        trial.set_user_attr(keys.HYPERPARAMETERS, {"n": trial.number})
        value = trial.suggest_float("x", 0.0, 1.0)
        if call % 3 == 1:  # another worker's trials end meanwhile
            for state, value_ in ((TrialState.PRUNED, None), (TrialState.COMPLETE, 0.5)):
                study.add_trial(
                    create_trial(state=state, value=value_, user_attrs={keys.FINGERPRINT: "eee"})
                )
        note.write(trial, [value])
        return value

    def rebuilt(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        board = leaderboard(study)
        assert get_note(study) == leaderboard_markdown(board.head(3), len(board))

    study.optimize(objective, n_trials=14, callbacks=[rebuilt])
    assert "## Leaderboard (5 architectures)" in get_note(study)


def test_a_two_objective_study_shows_its_pareto_front(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'multi.db'}")
    objective = make_objective(
        TASK,
        hyperparameters=TWO_BUDGETS,
        max_steps=20,
        eval_every=10,
        backend="reference",
        objectives=("score", "params"),
    )
    study = optuna.create_study(storage=storage, directions=objective.directions)
    seed_study(study, ["gru", "mut1", "lstm"])
    study.optimize(objective, n_trials=3)
    status, _, body = _get(wsgi(storage), f"/api/studies/{study._study_id}")
    detail = json.loads(body)
    assert detail["directions"] == ["maximize", "minimize"]
    assert detail["objective_names"] == ["score", "param_count"]
    front = sorted(t["number"] for t in detail["best_trials"])
    assert front and front == sorted(t.number for t in study.best_trials)
    assert detail["note"]["body"].startswith("## Leaderboard (3 architectures)")

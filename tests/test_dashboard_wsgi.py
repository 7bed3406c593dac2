"""optuna-dashboard, served in this process, shows the cell attrs, notes and SVG diagrams."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna_dashboard import wsgi

from optuna_rnn import make_objective, seed_study
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.cell.render import render_svg
from optuna_rnn.objective import Hyperparameters
from optuna_rnn.tasks.memorization import Memorization

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
    study = optuna.create_study(storage=storage, direction="maximize")
    seed_study(study, ["gru", "mut1"])
    objective = make_objective(
        Memorization(length=3, alphabet=6, eval_size=40),
        hyperparameters=Hyperparameters(param_budgets=(1500,), layer_counts=(1,)),
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

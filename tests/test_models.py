"""Trained models as Optuna artifacts: saved at the trial's end, loaded and exported anywhere."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from _helpers import SMALL, TASK, tiny_search_argv
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState
from safetensors import safe_open

import optuna_rnn as orn
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.cli import main
from optuna_rnn.cli.spec import SearchSpec
from optuna_rnn.models import (
    ARTIFACT_STORE_ATTR,
    ModelCard,
    load_model_file,
    model_card,
    read_model_card,
    save_model_file,
)
from optuna_rnn.tasks import Batch
from optuna_rnn.train import build_model, validate

ROOT = Path(__file__).resolve().parents[1]
#: Tiny trials that draw one or two layers, so kept models need not be single-layer.
TINY_HYPERPARAMETERS = {"param_budgets": [3000], "layer_counts": [1, 2]}


def _card(model: torch.nn.Module, **kw: object) -> ModelCard:
    return ModelCard.of(model, TASK, hyperparameters={"init_scale": 1.0}, batch_size=8, **kw)


@pytest.mark.parametrize("name", ["lstm", "gru", "mut1", "mut3"])
def test_a_model_file_round_trips_weights_and_card(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(zoo.get(name), TASK, hidden_size=7, num_layers=2, init_scale=1.4).eval()
    card = _card(model, score=0.5, trial=3)
    path = save_model_file(tmp_path / "m.safetensors", model, card)
    assert read_model_card(path) == card
    loaded = load_model_file(path, backend="reference")
    assert not loaded.training
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    inputs = torch.randint(0, TASK.input_size, (5, 3))
    batch = Batch(inputs, inputs, torch.ones_like(inputs, dtype=torch.bool))
    torch.testing.assert_close(loaded(batch)[0], model(batch)[0], rtol=0, atol=1e-6)


def test_the_card_names_the_task_and_reads_back_from_json(tmp_path: Path) -> None:
    model = build_model(zoo.get("gru"), TASK, hidden_size=5)
    card = _card(model)
    data = json.loads(json.dumps(card.to_dict()))
    assert data["equations"] == str(zoo.get("gru"))
    assert data["task"]["vocab"] == list(TASK.vocab)
    assert data["task"]["input_size"] == TASK.input_size
    assert ModelCard.from_dict(data) == card
    with pytest.raises(ValueError, match="not an optuna-rnn model card"):
        ModelCard.from_dict({**data, "format": "other"})
    with pytest.raises(ValueError, match="lacks"):
        ModelCard.from_dict({k: v for k, v in data.items() if k != "hidden_size"})


def test_a_safetensors_file_without_a_card_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="without an optuna-rnn model card"):
        load_model_file(tmp_path / "other.safetensors")


@pytest.fixture(scope="module")
def searched_study(tmp_path_factory: pytest.TempPathFactory) -> optuna.Study:
    """A library study on SQLite, with a pruned trial among its complete ones."""
    root = tmp_path_factory.mktemp("models")
    study = optuna.create_study(
        storage=f"sqlite:///{root / 's.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    # The three trials must complete: a modest learning rate (random draws may diverge).
    orn.seed_study(study, ["gru", "lstm", "mut1"], hyperparameters={"learning_rate": 1.0})
    objective = orn.make_objective(
        TASK,
        hyperparameters=dataclasses.replace(SMALL, layer_counts=(1, 2), learning_rates=(1.0, 5.0)),
        max_steps=20,
        eval_every=10,
        batch_size=8,
        backend="reference",
        artifact_store=root / "artifacts",
    )
    study.optimize(objective, n_trials=3)
    # A pruned trial keeps its diagram and no model.
    study.enqueue_trial({"learning_rate": 5.0})
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)
    optuna.load_study(study_name=study.study_name, storage=study._storage, pruner=pruner).optimize(
        objective, n_trials=1
    )
    return study


def test_every_complete_trial_keeps_one_model(searched_study: optuna.Study) -> None:
    study = searched_study
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.PRUNED) == 1
    for trial in study.trials:
        names = sorted(m.filename for m in get_all_artifact_meta(trial, storage=study._storage))
        models = [n for n in names if n.endswith(".safetensors")]
        complete = trial.state == TrialState.COMPLETE
        assert models == (["model-memorization.safetensors"] if complete else [])
        assert any(n.endswith(".svg") for n in names)
    assert Path(study.user_attrs[ARTIFACT_STORE_ATTR]).is_dir()


def test_load_model_gives_the_stored_validation_score(searched_study: optuna.Study) -> None:
    study = searched_study
    for trial in [t for t in study.trials if t.state == TrialState.COMPLETE]:
        card = model_card(study, trial.number)
        model = orn.load_model(study, trial.number, backend="reference")
        assert card.trial == trial.number and card.cell == Cell.parse(trial.user_attrs["equations"])
        assert card.hyperparameters == trial.user_attrs["hyperparameters"]
        assert card.hidden_size == trial.user_attrs["width"]
        score = validate(model, TASK, "valid", card.batch_size)["score"]
        assert score == pytest.approx(trial.value, abs=1e-6)
    assert orn.load_model(study).rnn.cell == orn.best_cell(study)
    assert orn.best_cell(study) == Cell.parse(study.best_trial.user_attrs["equations"])


def test_load_model_says_what_is_missing(searched_study: optuna.Study, tmp_path: Path) -> None:
    study = searched_study
    pruned = next(t for t in study.trials if t.state == TrialState.PRUNED)
    with pytest.raises(ValueError, match=f"trial {pruned.number} .* no model artifact.*PRUNED"):
        orn.load_model(study, pruned.number)
    with pytest.raises(ValueError, match="no trial 99"):
        orn.load_model(study, 99)
    bare = optuna.create_study(storage=study._storage, direction="maximize")
    bare.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"equations": "h' = h"}))
    with pytest.raises(ValueError, match="names no artifact store"):
        orn.load_model(bare)
    bare.set_user_attr(ARTIFACT_STORE_ATTR, str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="not a folder here"):
        orn.load_model(bare)
    two = optuna.create_study(storage=study._storage, directions=["maximize", "minimize"])
    with pytest.raises(ValueError, match="best_trials"):
        orn.load_model(two, artifact_store=tmp_path)


# ----------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def cli_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished CLI search with the default artifact folder: (directory, storage URL)."""
    root = tmp_path_factory.mktemp("cli-models")
    url = f"sqlite:///{root / 'runs.db'}"
    argv = tiny_search_argv(
        url, "--seed", "1", "--study-name", "tiny", hyperparameters=TINY_HYPERPARAMETERS
    )
    assert main(argv) == 0
    return root, url


def _fresh_python(code: str, cwd: Path) -> str:
    """Run ``code`` in a new interpreter that imports this checkout; returns its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cli_keeps_artifacts_beside_the_database_and_prints_the_dashboard_command(
    cli_search: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = cli_search
    study = optuna.load_study(study_name="tiny", storage=url)
    folder = root / "runs-artifacts"
    assert folder.is_dir() and study.user_attrs[ARTIFACT_STORE_ATTR] == str(folder)
    assert SearchSpec.from_study(study).objective["artifact_store"] == str(folder)
    assert main(["worker", "--storage", url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"optuna-dashboard {url} --artifact-dir {folder}" in out


def test_a_fresh_process_reevaluates_the_best_model_of_a_cli_search(
    cli_search: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = cli_search
    out = _fresh_python(
        f"""
        import optuna
        import optuna_rnn as orn
        from optuna_rnn.cli.spec import SearchSpec
        from optuna_rnn.models import model_card
        from optuna_rnn.train import validate

        study = optuna.load_study(study_name="tiny", storage={url!r})
        model = orn.load_model(study)
        task = SearchSpec.from_study(study).build_tasks()[0]
        print(repr(validate(model, task, "valid", model_card(study).batch_size)["score"]))
        """,
        cwd=tmp_path,
    )
    study = optuna.load_study(study_name="tiny", storage=url)
    assert abs(float(out) - study.best_value) <= 1e-6


def test_export_model_writes_a_folder_a_fresh_process_loads(
    cli_search: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = cli_search
    out = tmp_path / "best"
    assert main(["export", "--model", str(out), "--storage", url]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "model.safetensors",
        "model.json",
        "cell.txt",
        "cell.json",
        "cell.svg",
        "README.md",
    }
    study = optuna.load_study(study_name="tiny", storage=url)
    best = orn.best_cell(study)
    assert Cell.parse((out / "cell.txt").read_text()) == best
    assert Cell.from_dict(json.loads((out / "cell.json").read_text())) == best
    assert "load_model_file" in (out / "README.md").read_text()
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["optuna_rnn.model_card"])["trial"] == study.best_trial.number
    task = "Memorization(length=3, alphabet=8, eval_size=40)"
    score = _fresh_python(
        f"""
        from optuna_rnn.models import load_model_file, read_model_card
        from optuna_rnn.tasks import Memorization
        from optuna_rnn.train import validate

        model = load_model_file("best/model.safetensors")
        card = read_model_card("best/model.safetensors")
        print(repr(validate(model, {task}, "valid", card.batch_size)["score"]))
        """,
        cwd=tmp_path,
    )
    assert abs(float(score) - study.best_value) <= 1e-6


def test_export_model_of_a_trial_and_with_a_moved_store(
    cli_search: tuple[Path, str], tmp_path: Path
) -> None:
    root, url = cli_search
    moved = tmp_path / "moved"
    (root / "runs-artifacts").rename(moved)
    try:
        argv = ["export", "--model", str(tmp_path / "m"), "--storage", url, "--trial", "0"]
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert main([*argv, "--artifacts", str(moved)]) == 0
        assert read_model_card(tmp_path / "m" / "model.safetensors").trial == 0
    finally:
        moved.rename(root / "runs-artifacts")
    with pytest.raises(SystemExit):
        main(["export", "--storage", url])


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("sqlite:///optuna_rnn.db", "optuna_rnn-artifacts"),
        ("sqlite:////srv/runs/rnn.sqlite3", "/srv/runs/rnn-artifacts"),
        ("journal:logs/rnn.log", "logs/rnn-artifacts"),
        ("postgresql://me:secret@db/rnn", None),
        ("sqlite:///:memory:", None),
    ],
)
def test_the_default_artifact_folder_sits_beside_the_storage_file(
    url: str, folder: str | None
) -> None:
    from optuna_rnn.cli.artifacts import dashboard_command, default_folder

    assert default_folder(url) == (None if folder is None else Path(folder))
    command = dashboard_command(url, None if folder is None else str(Path(folder).resolve()))
    assert "secret" not in command
    if folder is None:
        assert "--artifact-dir" not in command
    else:
        assert command.endswith(f" --artifact-dir {folder}")


def test_artifacts_none_keeps_no_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    argv = tiny_search_argv(
        url, "--artifacts", "none", n_trials=2, hyperparameters=TINY_HYPERPARAMETERS
    )
    assert main(argv) == 0
    assert "pass --artifacts PATH" in capsys.readouterr().out
    assert not (tmp_path / "plain-artifacts").exists()
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    assert ARTIFACT_STORE_ATTR not in study.user_attrs
    assert all(not get_all_artifact_meta(t, storage=study._storage) for t in study.trials)

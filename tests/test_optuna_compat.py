"""Each use of Optuna's private API (optuna_rnn._optuna_compat) agrees with its public
fallback, on real storages; and no other module of the package touches a private name."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from optuna_rnn import _optuna_compat as compat

PACKAGE = Path(compat.__file__).parent


def _storages(tmp_path: Path) -> dict[str, optuna.storages.BaseStorage]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return {
        "inmemory": optuna.storages.InMemoryStorage(),
        "sqlite": optuna.storages.get_storage(url),
        "sqlite-heartbeat": optuna.storages.get_storage(
            optuna.storages.RDBStorage(url, heartbeat_interval=60)
        ),
        "journal": JournalStorage(JournalFileBackend(str(tmp_path / "journal.log"))),
    }


@pytest.mark.parametrize("kind", ["inmemory", "sqlite", "sqlite-heartbeat", "journal"])
def test_handles_agree_with_their_public_lookups(tmp_path: Path, kind: str) -> None:
    storage = _storages(tmp_path)[kind]
    study = optuna.create_study(storage=storage, study_name=f"compat-{kind}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert compat.storage_of(study) is storage
    study_id = compat.study_id_of(study)
    assert study_id == storage.get_study_id_from_name(study.study_name)
    bare = types.SimpleNamespace(study_name=study.study_name, _storage=storage)
    assert compat.study_id_of(bare) == study_id  # the fallback: no _study_id
    for trial in study.get_trials():
        private = compat.trial_id_of(trial, storage, study_id)
        public = compat.trial_id_of(types.SimpleNamespace(number=trial.number), storage, study_id)
        assert private == public
    assert compat.heartbeat_enabled(storage) == compat._heartbeat_public(storage)
    assert compat.heartbeat_enabled(storage) == (kind == "sqlite-heartbeat")


def test_non_domination_rank_agrees_with_peeling_fronts() -> None:
    rng = np.random.default_rng(0)
    for n, m in [(1, 2), (7, 2), (40, 3), (60, 2)]:
        values = rng.integers(0, 5, size=(n, m)).astype(float)  # ties included
        assert compat.non_domination_rank(values).tolist() == compat._peel_fronts(values).tolist()


def test_artifact_store_protocol_matches_optunas(tmp_path: Path) -> None:
    assert isinstance(FileSystemArtifactStore(str(tmp_path)), compat.ArtifactStore)
    private = pytest.importorskip("optuna.artifacts._protocol")
    ours = {n for n in vars(compat.ArtifactStore) if not n.startswith("_")}
    theirs = {n for n in vars(private.ArtifactStore) if not n.startswith("_")}
    assert ours == theirs


def test_cached_reads_leave_other_storages_to_the_public_reads(tmp_path: Path) -> None:
    for kind, storage in _storages(tmp_path).items():
        study = optuna.create_study(storage=storage, study_name=f"reads-{kind}")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        study_id = compat.study_id_of(study)
        cached = compat.cached_trials(storage, study_id, 0, refresh=True)
        plans = compat.cached_plans(storage, study_id, "k", after=-1, unfinished=(), exclude=-1)
        if kind.startswith("sqlite"):  # Optuna's cached SQL storage
            assert cached == storage.get_all_trials(study_id) and plans == []
        else:
            assert cached is None and plans is None


def _private_optuna_names(path: Path) -> list[str]:
    """Attributes or modules starting with ``_`` reached from ``optuna`` or from an object
    the code names study, trial, storage or frozen (the package's Optuna handles)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna."):
            if any(part.startswith("_") for part in node.module.split(".")) or any(
                a.name.startswith("_") for a in node.names
            ):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            base = node.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name in {"optuna", "study", "trial", "storage", "frozen", "t"} and not (
                node.attr.startswith("__")
            ):
                found.append(f"{path.name}:{node.lineno} {name}.{node.attr}")
    return found


def test_no_module_but_the_compat_module_touches_a_private_optuna_name() -> None:
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_optuna_compat.py"
        for hit in _private_optuna_names(path)
    ]
    assert found == []

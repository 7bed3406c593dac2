"""Reading a study's newer trials: the evolution sampler's one storage read per view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optuna_rnn.samplers._index import StudyIndex, trials_from


def _fingerprint(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.user_attrs.get("fp")


def _step(study: optuna.Study, pending: list[optuna.Trial], rng: np.random.Generator) -> None:
    """Ask one trial and, more often than not, finish a random pending one."""
    trial = study.ask()
    trial.set_user_attr("fp", "abcde"[rng.integers(5)])
    pending.append(trial)
    if rng.random() < 0.6:
        state = [TrialState.COMPLETE, TrialState.PRUNED][rng.integers(2)]
        done = pending.pop(int(rng.integers(len(pending))))
        study.tell(done, 0.5 if state == TrialState.COMPLETE else None, state=state)


@pytest.mark.parametrize("kind", ["sqlite", "inmemory"])
def test_trials_from_is_the_tail_of_get_all_trials(tmp_path: Path, kind: str) -> None:
    """Through a second handle on the storage (another worker's writes), at every step."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.get_storage(url) if kind == "sqlite" else None
    writer = optuna.create_study(storage=storage or optuna.storages.InMemoryStorage())
    reader_storage = optuna.storages.get_storage(url) if storage else writer._storage
    study_id = writer._study_id
    rng = np.random.default_rng(0)
    pending: list[optuna.Trial] = []
    for _ in range(30):
        _step(writer, pending, rng)
        start = int(rng.integers(len(writer.trials) + 1))
        tail = trials_from(reader_storage, study_id, start)
        full = reader_storage.get_all_trials(study_id)
        assert [(t.number, t.state, t.user_attrs) for t in tail] == [
            (t.number, t.state, t.user_attrs) for t in full[start:]
        ]


def test_view_from_settled_equals_a_view_of_the_whole_study(tmp_path: Path) -> None:
    """Reading only past ``settled`` loses nothing, unfinished trials included."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    index = StudyIndex(_fingerprint)
    rng = np.random.default_rng(1)
    pending: list[optuna.Trial] = []
    for step in range(40):
        _step(study, pending, rng)
        start = index.settled
        incremental = index.view(
            trials_from(study._storage, study._study_id, start), exclude=-1, start=start
        )
        fresh = StudyIndex(_fingerprint).view(study.get_trials(deepcopy=False), exclude=-1)
        assert incremental == fresh, step


def test_view_refuses_trials_that_skip_unindexed_ones() -> None:
    with pytest.raises(ValueError, match="skip unindexed"):
        StudyIndex(_fingerprint).view([], exclude=-1, start=1)

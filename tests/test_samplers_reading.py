"""Reading the study: the evolution sampler's fast paths on the cached SQL storage return
what Optuna's public reads return, and the index built from them is a memo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from optuna_rnn._optuna_compat import cached_plans
from optuna_rnn.samplers._index import StudyIndex
from optuna_rnn.samplers._records import (
    MUTATE,
    PLAN_KEY,
    ArchitectureChoice,
    Claims,
    write_plan,
)
from optuna_rnn.samplers._storage import claims_since, trials_from


def _trial_id(trial: optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def _fingerprint(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.user_attrs.get("fp")


def _new_index() -> StudyIndex:
    return StudyIndex(_fingerprint, [StudyDirection.MINIMIZE], trial_id=_trial_id)


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
        if rng.random() < 0.3:  # the reader's own trial: its cache now skips unread ones
            reader_storage.create_new_trial(study_id)
        start = int(rng.integers(len(writer.trials) + 1))
        # As the cache holds it: a contiguous run of trials, finished ones as they are.
        cached = trials_from(reader_storage, study_id, start, refresh=False)
        tail = trials_from(reader_storage, study_id, start)
        full = reader_storage.get_all_trials(study_id)
        assert [(t.number, t.state, t.user_attrs) for t in tail] == [
            (t.number, t.state, t.user_attrs) for t in full[start:]
        ]
        assert [t.number for t in cached] == [t.number for t in full[start : start + len(cached)]]
        assert all(t == full[t.number] for t in cached if t.state.is_finished())


def test_claims_since_in_one_query_equals_the_public_read(tmp_path: Path) -> None:
    """The cached SQL storage's one query and an uncached storage's get_all_trials read the
    same claims, for any window, while another worker claims, withdraws and finishes."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    writer = optuna.create_study(storage=url)
    cached = optuna.storages.get_storage(url)
    public = optuna.storages.RDBStorage(url)  # no cache: claims_since reads it publicly
    rng = np.random.default_rng(2)
    ids: list[int] = []
    open_: list[optuna.Trial] = []
    claimed = 0
    for _ in range(25):
        open_.append(writer.ask())
        ids.append(open_[-1]._trial_id)
        claimant = open_[rng.integers(len(open_))]
        fp = "abcde"[rng.integers(5)]
        params = {"lr": int(rng.integers(3))}
        plan = None if rng.random() < 0.2 else ArchitectureChoice(MUTATE, fp, params=params)
        write_plan(writer._storage, claimant._trial_id, plan)
        if rng.random() < 0.5:
            writer.tell(open_.pop(int(rng.integers(len(open_)))), 0.5)
        window = {
            "after": int(rng.choice([-1, *ids])),
            "unfinished": {int(i) for i in rng.choice(ids, size=3)},
            "exclude": int(rng.choice(ids)),
        }
        expected = claims_since(public, writer._study_id, **window)
        plans = cached_plans(cached, writer._study_id, PLAN_KEY, **window)  # the fast path
        assert plans is not None
        assert Claims.of(plans) == claims_since(cached, writer._study_id, **window) == expected
        claimed += len(plans)
    assert claimed > 25  # the windows held claims to compare


def test_view_from_settled_equals_a_view_of_the_whole_study(tmp_path: Path) -> None:
    """Reading only past ``settled`` loses nothing, unfinished trials included."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    index = _new_index()
    rng = np.random.default_rng(1)
    pending: list[optuna.Trial] = []
    for step in range(40):
        _step(study, pending, rng)
        start = index.settled
        incremental = index.view(
            trials_from(study._storage, study._study_id, start), exclude=-1, start=start
        )
        fresh = _new_index().view(study.get_trials(deepcopy=False), exclude=-1)
        assert incremental == fresh, step


def test_view_refuses_trials_that_skip_unindexed_ones() -> None:
    with pytest.raises(ValueError, match="skip unindexed"):
        _new_index().view([], exclude=-1, start=1)

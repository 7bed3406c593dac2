"""SQLite storages as open_storage gives them: a write-ahead log, no fsync per commit, and
transactions that still serialise between processes (tests/test_distributed_quota.py runs
four processes on one such file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from optuna_rnn.storage import open_storage

_UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)


def test_the_file_is_put_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{path}")
    optuna.create_study(storage=storage, study_name="s")
    with storage._backend.engine.connect() as connection:  # the RDBStorage in the cache
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
    assert (mode, sync) == ("wal", 1)  # 1: NORMAL
    # The mode is the file's: any other process or tool that opens it reads the log too.
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_second_handle_sees_every_commit_at_once(tmp_path: Path) -> None:
    """Commits without fsync are still visible to another connection at once (what
    workers on one machine rely on), and to a plain Optuna storage on the same file."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    writer = optuna.create_study(storage=open_storage(url), study_name="s")
    readers = [
        optuna.load_study(study_name="s", storage=open_storage(url)),
        optuna.load_study(study_name="s", storage=url),
    ]
    for k in range(5):
        trial = writer.ask()
        trial.set_user_attr("k", k)
        for reader in readers:
            assert [t.user_attrs.get("k") for t in reader.trials] == list(range(k + 1))
        writer.tell(trial, float(k))
    assert [reader.best_value for reader in readers] == [0.0, 0.0]  # minimised


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_unfinished_reads_equal_a_filter_of_every_trial(tmp_path: Path) -> None:
    """The storage's reads of WAITING and RUNNING trials (every ask's look for a WAITING
    one) equal Optuna's filter of all trials, while this handle and another worker ask,
    enqueue, pop and finish trials in any order."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    ours = optuna.create_study(storage=open_storage(url), study_name="s")
    other = optuna.load_study(study_name="s", storage=url)
    storage, study_id = ours._storage, ours._study_id
    rng = np.random.default_rng(0)
    running: list[optuna.Trial] = []
    seen = set()
    for _ in range(120):
        study = (ours, other)[rng.integers(2)]
        action = rng.integers(4)
        if action == 0:
            study.enqueue_trial({"x": float(rng.random())})
        elif action == 1 or not running:
            running.append(study.ask())  # pops a WAITING trial where there is one
        else:
            trial = running.pop(int(rng.integers(len(running))))
            state = (TrialState.COMPLETE, TrialState.FAIL)[rng.integers(2)]
            study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
        everything = storage.get_all_trials(study_id, deepcopy=False)
        for states in ((TrialState.WAITING,), (TrialState.RUNNING,), _UNFINISHED):
            read = storage.get_all_trials(study_id, deepcopy=False, states=states)
            assert [(t.number, t.state) for t in read] == [
                (t.number, t.state) for t in everything if t.state in states
            ]
            seen.update(t.state for t in read)
    assert seen == set(_UNFINISHED)  # both kinds were there to read

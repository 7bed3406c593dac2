"""Workers share one trial count through the storage alone (optuna_rnn.cli.run).

Real studies on SQLite and journal files, real spawned processes, a real SIGKILL; the
objectives are cheap functions so that only the sharing is under test.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_rnn._optuna_compat import storage_of, study_id_of, trial_id_of
from optuna_rnn.cli.run import (
    ENDED_BECAUSE,
    SURPLUS,
    WORKER_ATTR,
    TrialQuota,
    live_trials,
    work,
)
from optuna_rnn.storage import open_storage

HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 2}


def _quick(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    time.sleep(random.uniform(0.0, 0.03))
    return x * x


def _blocking(trial: optuna.Trial) -> float:
    trial.suggest_float("x", -1.0, 1.0)
    time.sleep(600)
    return 0.0


def _worker(url: str, objective_name: str, target: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="s", storage=open_storage(url, **HEARTBEAT))
    work(study, globals()[objective_name], target, poll=0.2)


def _spawn(url: str, objective_name: str, target: int) -> multiprocessing.Process:
    process = multiprocessing.get_context("spawn").Process(
        target=_worker, args=(url, objective_name, target)
    )
    process.start()
    return process


def _study(url: str) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(url, **HEARTBEAT))


@pytest.fixture(params=["sqlite", "journal"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return (
        f"sqlite:///{tmp_path}/s.db" if request.param == "sqlite" else f"journal:{tmp_path}/s.log"
    )


ASKED_OUTSIDE_OPTIMIZE = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


@ASKED_OUTSIDE_OPTIMIZE
def test_quota_admits_the_first_target_trials(url: str) -> None:
    study = _study(url)
    for _ in range(3):
        study.ask()
    quota = TrialQuota(study, 2)
    assert [quota.admits(n) for n in range(3)] == [True, True, False]
    state = quota.state()
    assert (state.started, state.finished, state.has_room, state.complete) == (3, 0, False, False)


@ASKED_OUTSIDE_OPTIMIZE
def test_trial_beyond_the_target_ends_as_surplus(url: str) -> None:
    study = _study(url)
    study.ask()  # another worker's trial holds the only slot
    study.optimize(TrialQuota(study, 1).guard(_quick), n_trials=1, catch=(Exception,))
    surplus = study.trials[-1]
    assert surplus.state == TrialState.FAIL
    assert surplus.user_attrs[ENDED_BECAUSE] == SURPLUS
    assert surplus.user_attrs[WORKER_ATTR].endswith(f":{os.getpid()}")
    assert [t.number for t in live_trials(study.trials)] == [0]


def test_enqueued_trials_are_run_then_the_count_is_exact(url: str) -> None:
    study = _study(url)
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    work(study, _quick, 5)
    assert len(study.trials) == 5
    assert [t.params["x"] for t in study.trials[:3]] == [0.1, 0.2, 0.3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    work(study, _quick, 5)  # already complete: runs nothing
    assert len(study.trials) == 5


def test_four_processes_finish_exactly_the_target(url: str) -> None:
    study = _study(url)
    enqueued = [0.1, 0.2, 0.3, 0.4]
    for x in enqueued:
        study.enqueue_trial({"x": x})
    target = 12
    processes = [_spawn(url, "_quick", target) for _ in range(4)]
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    trials = optuna.load_study(study_name="s", storage=open_storage(url, **HEARTBEAT)).trials
    live = live_trials(trials)
    assert len(live) == target
    assert all(t.state == TrialState.COMPLETE for t in live)
    # each enqueued trial ran once: no two processes popped the same one
    assert sorted(t.params["x"] for t in live if t.params["x"] in enqueued) == enqueued
    # Anything else ended at once as surplus, never ran the objective.
    assert all(t.user_attrs.get(ENDED_BECAUSE) == SURPLUS for t in trials if t not in live)


def test_killed_worker_trial_is_failed_and_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    study = _study(url)
    victim = _spawn(url, "_blocking", 3)
    deadline = time.monotonic() + 60
    while not [t for t in study.get_trials(states=(TrialState.RUNNING,)) if t.params]:
        assert time.monotonic() < deadline, "the worker never started its trial"
        time.sleep(0.1)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    (killed,) = study.get_trials(states=(TrialState.RUNNING,))

    work(study, _quick, 3, poll=0.2)  # waits out the grace period, then runs the retry

    trials = study.trials
    assert trials[killed.number].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == killed.params
    live = live_trials(trials)
    assert len(live) == 3 and all(t.state == TrialState.COMPLETE for t in live)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_trial_failed_as_stale_while_it_ran_costs_a_warning_not_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under load a live trial's heartbeat can come late; another worker then fails it as
    stale (and its retry takes its place). Optuna cannot tell that trial, so its own worker
    must give it up and go on rather than crash."""
    study = _study(f"sqlite:///{tmp_path}/s.db")
    storage, study_id = storage_of(study), study_id_of(study)
    failed: list[int] = []

    def failed_by_a_peer(trial: optuna.Trial) -> float:
        if not failed:  # what a peer's fail_stale_trials does to a late trial
            failed.append(trial.number)
            storage.set_trial_state_values(trial_id_of(trial, storage, study_id), TrialState.FAIL)
        return _quick(trial)

    with caplog.at_level("WARNING", logger="optuna_rnn.cli.run"):
        work(study, failed_by_a_peer, 3, poll=0.2)
    assert failed == [0]
    assert "Trial 0 was failed as stale by another worker" in caplog.text
    assert study.trials[0].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) >= 2

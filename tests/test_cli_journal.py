"""A worker killed on a journal file: its trial is failed and run again (issue 21 #12)."""

from __future__ import annotations

import socket
import subprocess

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from optuna_rnn.cli.run import WORKER_ATTR, fail_orphaned_trials, live_trials, work


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_local_workers_trial_is_failed_and_retried_so_the_count_is_met(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(storage=storage, study_name="j")
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    orphan.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{_dead_pid()}")
    elsewhere = study.ask()  # another machine's worker: not ours to judge
    elsewhere.set_user_attr(WORKER_ATTR, "another-host:1")
    work(study, lambda t: t.suggest_float("x", 0, 1), target=4)
    trials = study.get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[elsewhere.number].state == TrialState.RUNNING
    live = live_trials(trials)
    assert orphan.number not in [t.number for t in live]
    assert sum(t.state == TrialState.COMPLETE for t in live) == 3  # 4 slots, one RUNNING elsewhere
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retried) == 1 and retried[0].params == trials[orphan.number].params


def test_a_live_workers_trial_is_left_alone(tmp_path):
    import os

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(storage=storage, study_name="j")
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
    assert fail_orphaned_trials(study) == []
    assert study.get_trials()[0].state == TrialState.RUNNING

"""`optuna-rnn search --workers 2` stopped by SIGTERM (``kill PID``): its workers end with
it, and the same command then finishes the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from _helpers import tiny_search_argv
from optuna.trial import TrialState

from optuna_rnn.cli.run import WORKER_ATTR, live_trials

N_TRIALS = 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_ends_the_workers_and_the_same_command_finishes_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite3'}"
    argv = [
        sys.executable,
        "-m",
        "optuna_rnn.cli",
        *tiny_search_argv(
            url,
            "--study-name",
            "s",
            "--workers",
            "2",
            "--pruner",
            "none",
            "--heartbeat-interval",
            "1",
            "--grace-period",
            "2",
            n_trials=N_TRIALS,
            max_steps=100_000,
            max_seconds=3.0,
        ),
    ]
    search = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    running: list[optuna.trial.FrozenTrial] = []
    while len(running) < 2:
        assert time.monotonic() < deadline and search.poll() is None, search.communicate()
        time.sleep(0.1)
        if "s" in optuna.get_all_study_names(url):
            study = optuna.load_study(study_name="s", storage=url)
            running = [
                t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.intermediate_values and WORKER_ATTR in t.user_attrs
            ]
    workers = {int(t.user_attrs[WORKER_ATTR].rsplit(":", 1)[1]) for t in running}

    search.send_signal(signal.SIGTERM)
    _, err = search.communicate(timeout=60)
    assert search.returncode == 128 + signal.SIGTERM, err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their search"
        time.sleep(0.1)

    time.sleep(3)  # past the grace period: the stopped trials are stale
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    stopped = {t.number for t in running}
    assert all(trials[n].state == TrialState.FAIL for n in stopped)
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    assert stopped <= retried
    live = live_trials(trials)
    # every one finished (a diverging cell's trial is PRUNED)
    assert len(live) == N_TRIALS
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in live)

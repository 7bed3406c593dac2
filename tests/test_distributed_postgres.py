"""Four workers on one study in a real PostgreSQL server, one of them SIGKILLed mid-trial.

The fixture starts a throwaway cluster (initdb + pg_ctl, a free loopback port, a temp
dir; as the ``postgres`` user when run as root, since the server refuses root). Where the
server binaries are missing the test is skipped; ``.ci/run`` installs them.
"""

from __future__ import annotations

import collections
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _helpers import free_port, tiny_cli_args
from optuna.trial import TrialState

from optuna_rnn.cli.run import WORKER_ATTR, live_trials
from optuna_rnn.samplers._records import REEVALUATE, read_plan

pytest.importorskip(
    "psycopg", reason="psycopg 3 (pip install 'optuna-rnn[postgres]') is needed to reach PostgreSQL"
)

# Trials end at a wall-time budget, not a step count, and nothing prunes them: the
# search's two workers cannot use up the study while the `worker` command still starts.
TINY = [*tiny_cli_args(max_steps=100_000, max_seconds=2.0), "--pruner", "none"]
N_TRIALS = 10
GRACE_PERIOD = 3


def _server_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=os.path.getmtime)
    return versions[-1] if versions else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _server_binary("initdb"), _server_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's "
            "`postgresql` package (as .ci/run does) to run this test"
        )
    root = Path(tempfile.mkdtemp(prefix="optuna-rnn-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        # The README's form, postgresql://USER:PASSWORD@HOST/DB: no driver named, so
        # SQLAlchemy picks psycopg 3, the driver of the `postgres` extra.
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _workers(trials: list[optuna.trial.FrozenTrial]) -> set[str]:
    return {t.user_attrs[WORKER_ATTR] for t in trials if WORKER_ATTR in t.user_attrs}


def _kill_a_worker_mid_trial(
    study: optuna.Study, commands: list[subprocess.Popen], *, earlier: set[str]
) -> int:
    """Once three workers of ``commands`` (not in ``earlier``) have started trials, so both
    commands run, SIGKILL the worker of a trial that has reported but not finished; its
    number."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for command in commands:
            assert command.poll() is None, command.communicate()
        trials = study.get_trials()
        if len(_workers(trials) - earlier) < 3:
            time.sleep(0.05)
            continue
        for trial in trials:
            if (
                trial.state == TrialState.RUNNING
                and trial.intermediate_values
                and WORKER_ATTR in trial.user_attrs
            ):
                os.kill(int(trial.user_attrs[WORKER_ATTR].rsplit(":", 1)[1]), signal.SIGKILL)
                return trial.number
        time.sleep(0.05)
    raise AssertionError("three workers did not start trials, one of them reporting, in time")


def _cli(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optuna_rnn.cli", *argv, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_workers_survive_a_killed_one(postgres_url: str) -> None:
    """`search` creates the study; `worker --workers 2` joins it while `search --workers 2`
    resumes it, both started at once so that neither finishes it before the other starts."""
    where = [
        "--storage",
        postgres_url,
        "--study-name",
        "pg",
        "--workers",
        "2",
        "--heartbeat-interval",
        "1",
        "--grace-period",
        str(GRACE_PERIOD),
    ]
    search_argv = ("search", *TINY, "--n-trials", str(N_TRIALS), "--seed", "0", *where)
    create = _cli(*search_argv, "--timeout", "0.1")  # each worker starts one trial at most
    _, create_err = create.communicate(timeout=120)
    assert create.returncode == 0, create_err
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    earlier = _workers(study.get_trials())
    search, worker = _cli(*search_argv), _cli("worker", *where)
    killed_number = _kill_a_worker_mid_trial(study, [search, worker], earlier=earlier)
    (out, err), (_, worker_err) = (c.communicate(timeout=300) for c in (search, worker))
    assert search.returncode == 0, err
    assert worker.returncode == 0, worker_err
    assert "1 of 2 workers exited with [-9]" in err + worker_err

    trials = study.get_trials()
    live = live_trials(trials)
    # the requested count, all finished, nothing left running or waiting
    assert len(live) == N_TRIALS
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in live)
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert len(_workers(trials) - earlier) >= 3  # both commands worked
    # the killed trial failed after the grace period and its retry ran in its place
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL and killed not in live
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed_number]
    assert retry in live and retry.params == killed.params
    assert retry.user_attrs[WORKER_ATTR] != killed.user_attrs[WORKER_ATTR]
    # no architecture trained twice except by the sampler's re-evaluations
    by_fingerprint = collections.defaultdict(list)
    for trial in live:
        by_fingerprint[trial.user_attrs["fingerprint"]].append(trial)
    for group in by_fingerprint.values():
        repeats = [
            t for t in group[1:] if (plan := read_plan(t)) is None or plan.action != REEVALUATE
        ]
        assert not repeats, [t.number for t in group]
    assert "best cell" in out

"""Bad input and broken storages end the CLI with one line and status 2 (issue 21)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_rnn.cli import main
from optuna_rnn.cli.args import TrialsFailed
from optuna_rnn.cli.search import _check_outcome
from optuna_rnn.cli.spec import SPEC_ATTR, SearchSpec

QUICK = ["--n-trials", "2", "--set", "max_steps=3", "--set", "eval_every=3", "--no-progress"]


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "random.db").write_bytes(bytes(range(256)) * 16)
    (tmp / "afile").write_text("")
    db = f"sqlite:///{tmp}/ok.db"
    search = ["search", *QUICK]
    return {
        "unknown task option": (
            [*search, "--task", "memorization,nokey=1", "--storage", db],
            "nokey",
        ),
        "task option of the wrong type": (
            [*search, "--task", "memorization,length=abc", "--storage", db],
            "length=abc",
        ),
        "unknown preset": (
            [*search, "--task", "arithmetic:huge", "--storage", db],
            "unknown preset 'huge'",
        ),
        "negative length": (
            [*search, "--task", "memorization,length=-5", "--storage", db],
            "length must be positive",
        ),
        "too few problems": (
            [*search, "--task", "memorization,length=1,alphabet=2", "--storage", db],
            "too small",
        ),
        "unknown setting": ([*search, "--set", "nosuch=1", "--storage", db], "nosuch"),
        "bad hyperparameters": (
            [*search, "--set", 'hyperparameters={"nosuch": [1]}', "--storage", db],
            "nosuch",
        ),
        "no torch threads": (
            [*search, "--set", "torch_threads=0", "--storage", db],
            "torch_threads",
        ),
        "empty batches": ([*search, "--set", "batch_size=0", "--storage", db], "batch_size"),
        "artifact store in a file": (
            [*search, "--set", f"artifact_store={tmp}/afile/x", "--storage", db],
            "afile",
        ),
        "unknown backend": (
            [*search, "--set", "backend=bogus", "--storage", db],
            "backend='bogus'",
        ),
        "missing device": (
            [*search, "--set", 'device="cuda:9"', "--storage", db],
            "device='cuda:9'",
        ),
        "sqlite in a missing folder": (
            [*search, "--storage", "sqlite:////nonexistent/dir/a.db"],
            "does its folder exist",
        ),
        "random bytes as the db": (
            [*search, "--storage", f"sqlite:///{tmp}/random.db"],
            "not an SQLite database",
        ),
        "random bytes, leaderboard": (
            ["leaderboard", "--storage", f"sqlite:///{tmp}/random.db"],
            "not an SQLite",
        ),
        "in-memory sqlite": ([*search, "--storage", "sqlite://"], "names no file"),
        "mysql without a driver": (
            ["leaderboard", "--storage", "mysql://u:p@localhost/db"],
            "PyMySQL",
        ),
        "journal in a missing folder": (
            [*search, "--storage", "journal:/nonexistent/dir/j.log"],
            "journal file",
        ),
        "no seed cells": ([*search, "--seed-cells", "", "--storage", db], "write 'none'"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "unknown task option",
        "task option of the wrong type",
        "unknown preset",
        "negative length",
        "too few problems",
        "unknown setting",
        "bad hyperparameters",
        "no torch threads",
        "empty batches",
        "artifact store in a file",
        "unknown backend",
        "missing device",
        "sqlite in a missing folder",
        "random bytes as the db",
        "random bytes, leaderboard",
        "in-memory sqlite",
        "mysql without a driver",
        "journal in a missing folder",
        "no seed cells",
    ],
)
def test_bad_input_is_one_line_and_status_2(name, tmp_path, capsys):
    argv, words = _cases(tmp_path)[name]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1] and err[-1].startswith("optuna-rnn ")
    assert "Traceback" not in "\n".join(err)
    assert len(err) == 1 or err[0].startswith("usage:")  # argparse's own errors show the usage
    assert not list(tmp_path.glob("ok.db")) or name == "no seed cells"  # nothing ran, no study made


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="torch_threads"):
        main(
            [
                "--debug",
                "search",
                *QUICK,
                "--set",
                "torch_threads=0",
                "--storage",
                f"sqlite:///{tmp_path}/a.db",
            ]
        )


def test_a_closed_pipe_ends_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "optuna_rnn.cli", "show", "lstm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # as `| head -n 0` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_a_run_whose_every_trial_failed_raises(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/f.db", study_name="f")
    study.set_user_attr(SPEC_ATTR, SearchSpec(n_trials=2, seed_cells=()).to_json())
    for _ in range(2):
        trial = study.ask()
        study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", "boom")
        study.tell(trial, state=TrialState.FAIL)
    with pytest.raises(
        TrialsFailed, match="every one of the 2 finished trials failed; the last: boom"
    ):
        _check_outcome(study, timeout=None)
    trial = study.ask()
    study.tell(trial, 1.0)
    _check_outcome(study, timeout=None)  # one success: no error

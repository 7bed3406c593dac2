"""Tiny tasks and settings shared by the tests: a trial of them takes seconds on 2 cores.

Test modules import these names (``from _helpers import TASK``): setup.cfg's
``pythonpath = tests`` puts ``tests/`` on ``sys.path`` in every ``--import-mode``. Fixtures
live in ``conftest.py``, where pytest finds them without an import (``import conftest`` is
ambiguous outside a package: any other conftest.py on ``sys.path`` may answer it).
"""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.tasks.memorization import Memorization

#: The study scripts (``studies/*.py``), importable by name once on ``sys.path``.
STUDIES = Path(__file__).resolve().parent.parent / "studies"

#: The memorisation task the objective tests train on.
TASK = Memorization(length=3, alphabet=6, eval_size=40)
#: One choice of each hyperparameter: a trial trains one model, without drawing.
SMALL = Hyperparameters(
    param_budgets=(1500,),
    layer_counts=(1,),
    learning_rates=(1.0,),
    init_scales=(1.0,),
    max_grad_norms=(5.0,),
)
#: Two budgets, so the parameter count is a real second objective.
TWO_BUDGETS = dataclasses.replace(SMALL, param_budgets=(600, 1500))

#: The task and objective settings of the tiny command-line and study-script runs.
TINY_TASK = "memorization,length=3,alphabet=8,eval_size=40"
TINY_OBJECTIVE = {
    "max_steps": 40,
    "eval_every": 20,
    "batch_size": 8,
    "hyperparameters": {"param_budgets": [3000]},
}


def tiny_cli_args(**objective: object) -> list[str]:
    """``--task`` and ``--set`` options for :data:`TINY_TASK` with :data:`TINY_OBJECTIVE`,
    whose settings ``objective`` replaces or extends."""
    settings = {**TINY_OBJECTIVE, **objective}
    sets = [
        arg for key, value in settings.items() for arg in ("--set", f"{key}={json.dumps(value)}")
    ]
    return ["--task", TINY_TASK, *sets]


def tiny_search_argv(
    url: str, *options: str, sampler: str = "random", n_trials: int = 4, **objective: object
) -> list[str]:
    """``optuna-rnn search`` arguments for ``n_trials`` tiny trials in storage ``url``;
    ``options`` adds more (``--seed``, ``--study-name``, ...), ``objective`` as in
    :func:`tiny_cli_args`."""
    return [
        "search",
        *tiny_cli_args(**objective),
        "--no-progress",
        "--sampler",
        sampler,
        "--n-trials",
        str(n_trials),
        "--storage",
        url,
        *options,
    ]


def free_port() -> int:
    """A loopback TCP port that nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

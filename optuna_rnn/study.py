"""Study-level helpers: start a search from known cells, and rank what it found.

Both read and write only the storage, so they work from any process, and neither
imports torch.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from optuna_rnn.cell import Cell, zoo
from optuna_rnn.objective import Hyperparameters

if TYPE_CHECKING:
    from optuna_rnn.spaces import CellSpace

__all__ = ["LEADERBOARD_COLUMNS", "leaderboard", "seed_study"]

LEADERBOARD_COLUMNS = [
    "fingerprint",
    "zoo_name",
    "best_score",
    "median_score",
    "n_trials",
    "n_complete",
    "n_pruned",
    "n_failed",
    "best_trial",
    "best_params",
    "param_count",
    "equations",
]


def seed_study(
    study: optuna.Study,
    cells: Iterable[str | Cell],
    *,
    space: CellSpace | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
) -> None:
    """Enqueue known cells (zoo names or :class:`Cell` objects) as the next trials.

    The paper started its search from LSTM and GRU. ``space`` must be the objective's
    (default :class:`~optuna_rnn.GatedSpace`); ``hyperparameters`` fixes any of
    :attr:`Hyperparameters.names` for these trials, the rest are sampled as usual.
    Params already enqueued in the study (waiting or run) are skipped, so seeding a
    resumed study again adds nothing. Raises :class:`~optuna_rnn.CellError` for a cell
    the space cannot express.
    """
    if space is None:
        from optuna_rnn.spaces import GatedSpace

        space = GatedSpace()
    fixed = dict(hyperparameters or {})
    unknown = sorted(set(fixed) - set(Hyperparameters.names))
    if unknown:
        raise ValueError(
            f"unknown hyperparameters {unknown}; expected some of {list(Hyperparameters.names)}"
        )
    for cell in cells:
        if isinstance(cell, str):
            cell = zoo.get(cell)
        study.enqueue_trial({**space.encode(cell), **fixed}, skip_if_exists=True)


def leaderboard(
    study: optuna.Study, *, trials: Sequence[optuna.trial.FrozenTrial] | None = None
) -> pd.DataFrame:
    """One row per architecture (fingerprint), best first.

    ``best_score`` and ``median_score`` are over the completed trials; ``n_trials``
    counts every finished trial of the architecture (complete, pruned or failed).
    ``best_params`` are the best trial's hyperparameters. Architectures with no
    completed trial come last with a NaN score. ``trials`` ranks these instead of the
    study's (the study still gives the direction).
    """
    by_cell: dict[str, list[optuna.trial.FrozenTrial]] = {}
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=finished)
    for trial in (t for t in trials if t.state in finished):
        fingerprint = trial.user_attrs.get("fingerprint")
        if fingerprint is not None:
            by_cell.setdefault(fingerprint, []).append(trial)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    rows = []
    for fingerprint, trials in by_cell.items():
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        best = (max if maximize else min)(done, key=lambda t: t.value) if done else None
        states = [t.state for t in trials]
        rows.append(
            {
                "fingerprint": fingerprint,
                "zoo_name": trials[0].user_attrs.get("zoo_name"),
                "best_score": best.value if best else float("nan"),
                "median_score": statistics.median(t.value for t in done) if done else float("nan"),
                "n_trials": len(trials),
                "n_complete": len(done),
                "n_pruned": states.count(TrialState.PRUNED),
                "n_failed": states.count(TrialState.FAIL),
                "best_trial": best.number if best else None,
                "best_params": best.user_attrs.get("hyperparameters") if best else None,
                "param_count": best.user_attrs.get("param_count") if best else None,
                "equations": trials[0].user_attrs.get("equations"),
            }
        )
    board = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS).astype(
        {"best_trial": "Int64", "param_count": "Int64"}
    )
    board = board.sort_values(
        "best_score", ascending=not maximize, na_position="last", kind="stable"
    )
    return board.reset_index(drop=True)

"""Study-level helpers: start a search from known cells, and rank what it found.

Both read and write only the storage, so they work from any process, and neither
imports torch.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn import keys
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.hyperparameters import Hyperparameters

if TYPE_CHECKING:
    from optuna_rnn.spaces import CellSpace

__all__ = ["LEADERBOARD_COLUMNS", "Leaderboard", "leaderboard", "seed_study"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

LEADERBOARD_COLUMNS = [
    keys.FINGERPRINT,
    keys.ZOO_NAME,
    "best_score",
    "median_score",
    "n_trials",
    "n_complete",
    "n_pruned",
    "n_failed",
    "best_trial",
    "best_params",
    keys.PARAM_COUNT,
    keys.EQUATIONS,
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


@dataclass
class _Tally:
    """One architecture's finished trials, as the leaderboard counts them."""

    fingerprint: str
    first: int
    zoo_name: str | None
    equations: str | None
    scores: list[float] = field(default_factory=list)
    best: FrozenTrial | None = None
    n_trials: int = 0
    n_pruned: int = 0
    n_failed: int = 0


class Leaderboard:
    """A study's leaderboard, kept current one finished trial at a time.

    :meth:`add` moves one architecture in a ranking kept sorted, and :meth:`frame` reads
    the rows it shows off its top, so a note rewritten after every trial costs per trial
    what the new trials and the shown rows cost, not a rebuild from the whole study.
    Rows rank by the first objective in a multi-objective study.
    """

    def __init__(self, directions: Sequence[StudyDirection]) -> None:
        self.maximize = directions[0] == StudyDirection.MAXIMIZE
        self._tallies: dict[str, _Tally] = {}
        self._seen: set[int] = set()
        self._ranking: list[tuple[bool, float, int, str]] = []  # sorted, best first

    def add(self, trial: FrozenTrial) -> None:
        """Count one finished trial (once: a trial number seen before is skipped)."""
        if trial.number in self._seen or trial.state not in _FINISHED:
            return
        self._seen.add(trial.number)
        fingerprint = trial.user_attrs.get(keys.FINGERPRINT)
        if fingerprint is None:
            return
        tally = self._tallies.get(fingerprint)
        if tally is None:
            tally = self._tallies[fingerprint] = _Tally(
                fingerprint,
                trial.number,
                trial.user_attrs.get(keys.ZOO_NAME),
                trial.user_attrs.get(keys.EQUATIONS),
            )
        else:
            del self._ranking[bisect.bisect_left(self._ranking, self._rank(tally))]
        tally.first = min(tally.first, trial.number)
        tally.n_trials += 1
        tally.n_pruned += trial.state == TrialState.PRUNED
        tally.n_failed += trial.state == TrialState.FAIL
        if trial.state == TrialState.COMPLETE and trial.values and not math.isnan(trial.values[0]):
            bisect.insort(tally.scores, trial.values[0])
            if tally.best is None or self._better(trial, tally.best):
                tally.best = trial
        bisect.insort(self._ranking, self._rank(tally))

    def update(self, trials: Iterable[FrozenTrial]) -> None:
        """Count the finished trials among ``trials`` that are not counted yet."""
        for trial in trials:
            if trial.number not in self._seen:
                self.add(trial)

    def _better(self, trial: FrozenTrial, than: FrozenTrial) -> bool:
        a, b = trial.values[0], than.values[0]
        if a == b:
            return trial.number < than.number
        return a > b if self.maximize else a < b

    def _rank(self, tally: _Tally) -> tuple[bool, float, int, str]:
        """Sorts best first: scored before unscored, then by score, then by first trial."""
        if tally.best is None:
            return True, 0.0, tally.first, tally.fingerprint
        value = tally.best.values[0]
        return False, -value if self.maximize else value, tally.first, tally.fingerprint

    def frame(self, top: int | None = None) -> pd.DataFrame:
        """The best ``top`` rows (all by default), best first; see :func:`leaderboard`."""
        shown = [self._tallies[key[-1]] for key in self._ranking[:top]]
        rows = []
        for tally in shown:
            best = tally.best
            rows.append(
                {
                    keys.FINGERPRINT: tally.fingerprint,
                    keys.ZOO_NAME: tally.zoo_name,
                    "best_score": best.values[0] if best else float("nan"),
                    "median_score": statistics.median(tally.scores) if best else float("nan"),
                    "n_trials": tally.n_trials,
                    "n_complete": len(tally.scores),
                    "n_pruned": tally.n_pruned,
                    "n_failed": tally.n_failed,
                    "best_trial": best.number if best else None,
                    "best_params": best.user_attrs.get(keys.HYPERPARAMETERS) if best else None,
                    keys.PARAM_COUNT: best.user_attrs.get(keys.PARAM_COUNT) if best else None,
                    keys.EQUATIONS: tally.equations,
                }
            )
        return pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS).astype(
            {"best_trial": "Int64", keys.PARAM_COUNT: "Int64"}
        )

    def __len__(self) -> int:
        return len(self._tallies)


def leaderboard(
    study: optuna.Study, *, trials: Sequence[FrozenTrial] | None = None
) -> pd.DataFrame:
    """One row per architecture (fingerprint), best first.

    ``best_score`` and ``median_score`` are over the completed trials; ``n_trials``
    counts every finished trial of the architecture (complete, pruned or failed).
    ``best_params`` are the best trial's hyperparameters. Architectures with no
    completed trial come last with a NaN score. ``trials`` ranks these instead of the
    study's (the study still gives the direction). A multi-objective study ranks by
    its first objective.
    """
    board = Leaderboard(study.directions)
    board.update(
        study.get_trials(deepcopy=False, states=_FINISHED) if trials is None else trials
    )
    return board.frame()

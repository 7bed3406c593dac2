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

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn import keys
from optuna_rnn.cell import Cell, CellError, zoo
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
    draws: int = 1,
    choices: Hyperparameters | None = None,
    seed: int = 0,
) -> None:
    """Enqueue known cells (zoo names or :class:`Cell` objects) as the next trials.

    The paper started its search from LSTM and GRU. ``space`` is the objective's; by
    default the study's own: the one ``optuna-rnn search`` stored in it, else its
    :class:`~optuna_rnn.CellEvolutionSampler`'s, else :class:`~optuna_rnn.GatedSpace`.
    ``hyperparameters`` fixes any of :attr:`Hyperparameters.names` for these trials.

    ``draws=1`` enqueues each cell once and leaves the other hyperparameters to the
    sampler. ``draws=N`` enqueues each cell N times, with N distinct hyperparameter
    settings drawn (seeded by ``seed``) from ``choices`` (the objective's
    :class:`Hyperparameters`; by default the stored search's, else the defaults): draw k
    is the same setting for every cell, a paired design that compares cells on equal
    terms.

    Params already enqueued in the study (waiting or run) are skipped, so seeding a
    resumed study again adds nothing. Raises :class:`~optuna_rnn.CellError` for a cell
    the space cannot express, and ValueError for a cell given twice (use ``draws``), for
    hyperparameters outside ``choices``, and for a study that already holds trials of
    another space.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive int, got {draws!r}")
    stored = _stored_search(study)
    if space is None:
        space = _study_space(study, stored)
    if choices is None:
        choices = _stored_choices(stored)
    fixed = dict(hyperparameters or {})
    grid = choices.choices()
    unknown = sorted(set(fixed) - set(grid))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; expected some of {list(grid)}")
    for name, value in fixed.items():
        if value not in grid[name]:
            raise ValueError(f"hyperparameter {name}={value!r} is not one of {list(grid[name])}")
    encoded: dict[str, dict[str, Any]] = {}
    for cell in cells:
        cell = zoo.get(cell) if isinstance(cell, str) else cell
        if cell.fingerprint in encoded:
            raise ValueError(
                f"the cell {cell!r} is given twice; to train a cell several times, "
                "give it once with draws=N"
            )
        encoded[cell.fingerprint] = space.encode(cell)
    _check_study_space(study, space)
    settings = [fixed] if draws == 1 else _paired_draws(grid, fixed, draws, seed)
    for draw, setting in enumerate(settings):
        attrs = {keys.DRAW: draw} if draws > 1 else None
        for params in encoded.values():
            study.enqueue_trial({**params, **setting}, user_attrs=attrs, skip_if_exists=True)


def _stored_search(study: optuna.Study) -> Any:
    """The search spec ``optuna-rnn search`` stored in the study, or ``None``."""
    from optuna_rnn.cli.spec import SPEC_ATTR, SearchSpec

    return SearchSpec.from_study(study) if SPEC_ATTR in study.user_attrs else None


def _study_space(study: optuna.Study, stored: Any) -> CellSpace:
    """The space the study searches: the stored search's, its sampler's, or GatedSpace."""
    if stored is not None:
        return stored.build_space()
    from optuna_rnn.samplers import CellEvolutionSampler

    if isinstance(study.sampler, CellEvolutionSampler):
        return study.sampler.space
    from optuna_rnn.spaces import GatedSpace

    return GatedSpace()


def _stored_choices(stored: Any) -> Hyperparameters:
    """The hyperparameter choices of the stored search (its optimizer's defaults with its
    lists), else the defaults."""
    if stored is None:
        return Hyperparameters()
    objective = stored.objective
    return Hyperparameters.for_optimizer(
        objective.get("optimizer", "sgd"), objective.get("hyperparameters")
    )


def _check_study_space(study: optuna.Study, space: CellSpace) -> None:
    """ValueError if a trial of the study holds params of ``space``'s prefix that are no
    point of it: the study searches another space."""
    for trial in study.get_trials(deepcopy=False):
        params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
        own = {k: v for k, v in params.items() if k.startswith(space.prefix)}
        if not own:
            continue
        try:
            space.decode(own)
        except CellError as err:
            raise ValueError(
                f"trial {trial.number} of study {study.study_name!r} holds params of another "
                f"space than {type(space).__name__} ({err}); pass the study's space as "
                "space=, or seed another study"
            ) from None


def _paired_draws(
    grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any], draws: int, seed: int
) -> list[dict[str, Any]]:
    """``draws`` distinct settings of the hyperparameters not in ``fixed``, drawn without
    replacement from their grid, each with ``fixed`` added."""
    free = {name: tuple(c) for name, c in grid.items() if name not in fixed and len(c) > 1}
    size = math.prod(len(c) for c in free.values())
    if draws > size:
        raise ValueError(
            f"draws={draws} exceeds the {size} distinct settings of the hyperparameters "
            f"{sorted(free)}"
        )
    settings = []
    for index in np.random.default_rng(seed).choice(size, size=draws, replace=False):
        setting, rest = dict(fixed), int(index)
        for name, options in free.items():
            rest, k = divmod(rest, len(options))
            setting[name] = options[k]
        settings.append(setting)
    return settings


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
    board.update(study.get_trials(deepcopy=False, states=_FINISHED) if trials is None else trials)
    return board.frame()

"""Study-level helpers: start a search from known cells, and rank what it found.

Both read and write only the storage, so they work from any process, and neither
imports torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from optuna_rnn.cell import Cell, CellError, zoo
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
    for setting in settings:
        for params in encoded.values():
            study.enqueue_trial({**params, **setting}, skip_if_exists=True)


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
    options = {} if stored is None else stored.objective.get("hyperparameters", {})
    return Hyperparameters(**options)


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

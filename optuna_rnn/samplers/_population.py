"""The population: architectures derived from a study's finished trials, ranked.

An architecture is a fingerprint; its quality is that of its best COMPLETE trial in the
study's direction (multi-objective: the best non-domination rank among its trials, as
NSGA-II ranks trials). Nothing is remembered between calls: the population is recomputed
from the storage, so every worker that shares the storage sees the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial, TrialState

__all__ = ["AgingPopulation", "Architecture", "ElitePopulation", "collect_architectures"]


@dataclass
class Architecture:
    """One fingerprint and its COMPLETE trials (in trial-number order).

    ``rank`` orders architectures by quality, lower is better; it is set by
    :func:`rank_architectures`.
    """

    fingerprint: str
    trials: list[FrozenTrial] = field(default_factory=list)
    rank: float = 0.0
    best: FrozenTrial | None = None

    @property
    def birth(self) -> int:
        """The number of the architecture's first COMPLETE trial: its age in the study."""
        return self.trials[0].number


def collect_architectures(
    trials: Iterable[FrozenTrial], fingerprint_of: Callable[[FrozenTrial], str | None]
) -> dict[str, Architecture]:
    """Group the COMPLETE trials that carry a fingerprint by architecture."""
    out: dict[str, Architecture] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        fp = fingerprint_of(t)
        if fp is not None:
            out.setdefault(fp, Architecture(fp)).trials.append(t)
    return out


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    sign = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    values = np.array([t.values for t in trials], dtype=float).reshape(len(trials), -1)
    return values * sign


def rank_architectures(
    architectures: Iterable[Architecture], directions: Sequence[StudyDirection]
) -> list[Architecture]:
    """Set each architecture's ``rank`` and ``best``; return them best first (ties: oldest)."""
    archs = list(architectures)
    trials = [t for a in archs for t in a.trials]
    if not trials:
        return []
    losses = _losses(trials, directions)
    trial_rank = (
        losses[:, 0] if len(directions) == 1 else _fast_non_domination_rank(losses).astype(float)
    )
    k = 0
    for a in archs:
        mine = trial_rank[k : k + len(a.trials)]
        a.rank = float(mine.min())
        a.best = a.trials[int(np.argmin(mine))]
        k += len(a.trials)
    return sorted(archs, key=lambda a: (a.rank, a.birth))


class ElitePopulation:
    """The paper's population: the ``size`` best architectures found so far."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(
        self, architectures: Iterable[Architecture], directions: Sequence[StudyDirection]
    ) -> list[Architecture]:
        return rank_architectures(architectures, directions)[: self.size]


class AgingPopulation:
    """Regularised evolution (Real et al., 2019): the ``size`` youngest architectures.

    The oldest member leaves, not the worst, so a lucky early score cannot hold a place
    forever. Members are returned best first, for tournament selection.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(
        self, architectures: Iterable[Architecture], directions: Sequence[StudyDirection]
    ) -> list[Architecture]:
        youngest = sorted(architectures, key=lambda a: a.birth)[-self.size :]
        return rank_architectures(youngest, directions)

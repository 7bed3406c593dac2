"""The population: architectures derived from a study's finished trials, ranked.

An architecture is a fingerprint; its quality is that of its best COMPLETE trial in the
study's direction (multi-objective: the best non-domination rank among its trials, as
NSGA-II ranks trials). Nothing is remembered between asks but a memo of finished trials
(:mod:`optuna_rnn.samplers._index`): every worker that shares the storage sees the same
population. All values here are immutable, so threads can share them.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import FrozenTrial

__all__ = [
    "AgingPopulation",
    "Architecture",
    "ElitePopulation",
    "Member",
    "rank_architectures",
]


@dataclass(frozen=True)
class Architecture:
    """One fingerprint and its COMPLETE trials, in trial-number order.

    ``lowest`` and ``highest`` are the trials with the lowest and highest first value (the
    oldest on ties), kept as trials are added so that ranking a single-objective study
    costs one step per architecture, not per trial.
    """

    fingerprint: str
    trials: tuple[FrozenTrial, ...] = ()
    lowest: FrozenTrial | None = None
    highest: FrozenTrial | None = None

    @property
    def birth(self) -> int:
        """The number of the architecture's first COMPLETE trial: its age in the study."""
        return self.trials[0].number

    def with_trial(self, trial: FrozenTrial) -> Architecture:
        trials = list(self.trials)
        bisect.insort(trials, trial, key=lambda t: t.number)
        low = min(trials, key=lambda t: (t.values[0], t.number))
        high = min(trials, key=lambda t: (-t.values[0], t.number))
        return Architecture(self.fingerprint, tuple(trials), low, high)

    def best(self, direction: StudyDirection) -> FrozenTrial:
        """The best trial in a single-objective study."""
        best = self.lowest if direction == StudyDirection.MINIMIZE else self.highest
        assert best is not None, "an architecture has at least one trial"
        return best


@dataclass(frozen=True)
class Member:
    """A ranked architecture: ``rank`` orders quality (lower is better), ``best`` is its
    best trial (for multi-objective, one of its trials on its best front)."""

    fingerprint: str
    rank: float
    best: FrozenTrial
    birth: int


def rank_architectures(
    architectures: Iterable[Architecture],
    directions: Sequence[StudyDirection],
    limit: int | None = None,
) -> list[Member]:
    """Rank architectures by their best trial; best first, ties to the oldest.

    ``limit`` keeps only that many (a partial sort where the study has many).
    """
    archs = list(architectures)
    if len(directions) == 1:
        direction = directions[0]
        sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
        keys = [(sign * a.best(direction).values[0], a.birth, k) for k, a in enumerate(archs)]
        top = heapq.nsmallest(limit, keys) if limit is not None else sorted(keys)
        return [Member(archs[k].fingerprint, r, archs[k].best(direction), b) for r, b, k in top]
    trials = [t for a in archs for t in a.trials]
    if not trials:
        return []
    sign_vec = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    trial_rank = _fast_non_domination_rank(np.array([t.values for t in trials]) * sign_vec)
    members = []
    k = 0
    for a in archs:
        mine = trial_rank[k : k + len(a.trials)]
        best = int(np.argmin(mine))
        members.append(Member(a.fingerprint, float(mine[best]), a.trials[best], a.birth))
        k += len(a.trials)
    return sorted(members, key=lambda m: (m.rank, m.birth))[:limit]


class ElitePopulation:
    """The paper's population: the ``size`` best architectures found so far."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(
        self,
        architectures: Iterable[Architecture],
        directions: Sequence[StudyDirection],
    ) -> list[Member]:
        return rank_architectures(architectures, directions, self.size)


class AgingPopulation:
    """Regularised evolution (Real et al., 2019): the ``size`` youngest architectures.

    The oldest member leaves, not the worst, so a lucky early score cannot hold a place
    forever. Members are returned best first, for tournament selection.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(
        self,
        architectures: Iterable[Architecture],
        directions: Sequence[StudyDirection],
    ) -> list[Member]:
        youngest = sorted(architectures, key=lambda a: a.birth)[-self.size :]
        return rank_architectures(youngest, directions)

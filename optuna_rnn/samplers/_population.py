"""The population: architectures derived from a study's finished trials, ranked.

An architecture is a fingerprint; its quality is that of its best COMPLETE trial in the
study's direction (multi-objective: the best non-domination rank among its trials, as
NSGA-II ranks trials). Nothing is remembered between asks but a memo of finished trials
(:mod:`optuna_rnn.samplers._index`), which keeps them as :class:`Standings`: every worker
that shares the storage sees the same population. Architectures and members are
immutable, so threads can share them.
"""

from __future__ import annotations

import abc
import bisect
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_rnn._optuna_compat import non_domination_rank

__all__ = [
    "AgingPopulation",
    "Architecture",
    "ElitePopulation",
    "Member",
    "Population",
    "Standings",
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


def _rank_key(arch: Architecture, direction: StudyDirection) -> tuple[float, int]:
    """Single-objective rank (the best value, lower is better) and birth, to sort by."""
    sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
    return sign * arch.best(direction).values[0], arch.birth


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
        keys = [(*_rank_key(a, direction), k) for k, a in enumerate(archs)]
        top = heapq.nsmallest(limit, keys) if limit is not None else sorted(keys)
        return [Member(archs[k].fingerprint, r, archs[k].best(direction), b) for r, b, k in top]
    trials = [t for a in archs for t in a.trials]
    if not trials:
        return []
    sign_vec = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    trial_rank = non_domination_rank(np.array([t.values for t in trials]) * sign_vec)
    members = []
    k = 0
    for a in archs:
        mine = trial_rank[k : k + len(a.trials)]
        best = int(np.argmin(mine))
        members.append(Member(a.fingerprint, float(mine[best]), a.trials[best], a.birth))
        k += len(a.trials)
    return sorted(members, key=lambda m: (m.rank, m.birth))[:limit]


class Standings:
    """A study's architectures in rank order and in birth order, kept as trials arrive.

    Ranking every architecture again at every ask is a pass over all of them; kept sorted,
    a new COMPLETE trial costs two binary searches. The rank order exists for
    single-objective studies (Pareto fronts need every trial at once, so multi-objective
    studies are ranked when asked). Not thread-safe: the study index updates it under its
    lock and hands out copies.
    """

    def __init__(self, directions: Sequence[StudyDirection]) -> None:
        self.directions = tuple(directions)
        self.architectures: dict[str, Architecture] = {}
        self._by_birth: list[tuple[int, str]] = []
        self._by_rank: list[tuple[float, int, str]] | None = (
            [] if len(self.directions) == 1 else None
        )

    @classmethod
    def of(
        cls, architectures: Iterable[Architecture], directions: Sequence[StudyDirection]
    ) -> Standings:
        standings = cls(directions)
        for arch in architectures:
            standings._put(arch)
        return standings

    def add(self, fingerprint: str, trial: FrozenTrial) -> None:
        """Count a COMPLETE ``trial`` of the architecture ``fingerprint``."""
        arch = self.architectures.get(fingerprint, Architecture(fingerprint))
        self._put(arch.with_trial(trial))

    def _put(self, arch: Architecture) -> None:
        old = self.architectures.get(arch.fingerprint)
        if old is not None:
            _remove(self._by_birth, (old.birth, old.fingerprint))
            if self._by_rank is not None:
                _remove(self._by_rank, self._rank_entry(old))
        bisect.insort(self._by_birth, (arch.birth, arch.fingerprint))
        if self._by_rank is not None:
            bisect.insort(self._by_rank, self._rank_entry(arch))
        self.architectures[arch.fingerprint] = arch

    def _rank_entry(self, arch: Architecture) -> tuple[float, int, str]:
        return (*_rank_key(arch, self.directions[0]), arch.fingerprint)

    def copy(self) -> Standings:
        """A snapshot that later :meth:`add` calls leave alone."""
        out = Standings(self.directions)
        out.architectures = dict(self.architectures)
        out._by_birth = list(self._by_birth)
        out._by_rank = None if self._by_rank is None else list(self._by_rank)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Standings):
            return NotImplemented
        return (self.directions, self.architectures, self._by_rank, self._by_birth) == (
            other.directions,
            other.architectures,
            other._by_rank,
            other._by_birth,
        )

    def best(self, limit: int) -> list[Member]:
        """The ``limit`` best architectures as members, best first (ties to the oldest)."""
        if self._by_rank is None:
            return rank_architectures(self.architectures.values(), self.directions, limit)
        direction = self.directions[0]
        return [
            Member(fp, rank, self.architectures[fp].best(direction), birth)
            for rank, birth, fp in self._by_rank[:limit]
        ]

    def youngest(self, limit: int) -> list[Architecture]:
        """The ``limit`` architectures with the latest births, oldest first."""
        kept = self._by_birth[max(0, len(self._by_birth) - limit) :]
        return [self.architectures[fp] for _, fp in kept]


def _remove(order: list, key: tuple) -> None:
    """Delete ``key`` from the sorted list ``order``."""
    del order[bisect.bisect_left(order, key)]


class Population(abc.ABC):
    """Which ``size`` architectures breed, chosen from the standings (subclass it and
    pass it to :class:`~optuna_rnn.CellEvolutionSampler` as ``population``)."""

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"population size must be a positive int, got {size!r}")
        self.size = size

    def __call__(
        self,
        architectures: Iterable[Architecture],
        directions: Sequence[StudyDirection],
    ) -> list[Member]:
        return self.select(Standings.of(architectures, directions))

    @abc.abstractmethod
    def select(self, standings: Standings) -> list[Member]:
        """The population from standings kept up to date (no ranking from scratch)."""


class ElitePopulation(Population):
    """The paper's population: the ``size`` best architectures found so far."""

    def select(self, standings: Standings) -> list[Member]:
        return standings.best(self.size)


class AgingPopulation(Population):
    """Regularised evolution (Real et al., 2019): the ``size`` youngest architectures.

    The oldest member leaves, not the worst, so a lucky early score cannot hold a place
    forever. Members are returned best first, for tournament selection.
    """

    def select(self, standings: Standings) -> list[Member]:
        return rank_architectures(standings.youngest(self.size), standings.directions)

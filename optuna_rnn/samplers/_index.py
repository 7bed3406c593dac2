"""An incremental index of a study's trials: what the sampler reads at every ask.

A finished trial never changes again, so each one is indexed once (by fingerprint, and
into the standings when COMPLETE); unfinished trials are looked at again at every ask.
The index is a memo of the storage, not state of its own: dropping it changes no proposal.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn.samplers._population import Architecture, Standings

__all__ = ["StudyIndex", "View"]

_Groups = Mapping[str, tuple[FrozenTrial, ...]]


@dataclass(frozen=True)
class View:
    """The study as one ask sees it, without the asking trial.

    ``fingerprint in view`` is the dedupe test: some trial evaluated or claims it.

    Attributes:
        standings: the architectures of the COMPLETE trials, ranked.
        finished: finished trials (any state) by fingerprint.
        unfinished: RUNNING and WAITING trials by fingerprint.
        unfinished_ids: the ids of every RUNNING and WAITING trial, claim or not.
        last_trial_id: the id of the newest trial seen (-1: none). Claims made after this
            view was read can only be on the unfinished trials or on newer ones.
    """

    standings: Standings
    finished: _Groups
    unfinished: _Groups
    unfinished_ids: frozenset[int] = frozenset()
    last_trial_id: int = -1

    @property
    def architectures(self) -> Mapping[str, Architecture]:
        """COMPLETE trials grouped by fingerprint."""
        return self.standings.architectures

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self.finished or fingerprint in self.unfinished

    def trials_of(self, fingerprint: str) -> tuple[FrozenTrial, ...]:
        """Every trial that evaluated or claims ``fingerprint``."""
        return self.finished.get(fingerprint, ()) + self.unfinished.get(fingerprint, ())


def _group(groups: dict[str, tuple[FrozenTrial, ...]], fp: str, trial: FrozenTrial) -> None:
    """Add ``trial`` to its group, kept in trial-number order whatever the finishing order."""
    group = list(groups.get(fp, ()))
    bisect.insort(group, trial, key=lambda t: t.number)
    groups[fp] = tuple(group)


class StudyIndex:
    """Finished trials indexed once; thread-safe (one sampler, several threads)."""

    def __init__(
        self,
        fingerprint_of: Callable[[FrozenTrial], str | None],
        directions: Sequence[StudyDirection],
        *,
        trial_id: Callable[[FrozenTrial], int],
    ) -> None:
        self._fingerprint_of = fingerprint_of
        self._trial_id = trial_id
        self._lock = threading.Lock()
        self._seen: set[int] = set()
        self._settled = 0
        self._settled_id = -1
        self._standings = Standings(directions)
        self._finished: dict[str, tuple[FrozenTrial, ...]] = {}

    @property
    def settled(self) -> int:
        """How many trials, from number 0, are finished and indexed: later views need only
        the trials numbered from here on."""
        return self._settled

    def view(self, trials: Sequence[FrozenTrial], *, exclude: int, start: int = 0) -> View:
        """Index the new finished trials among ``trials``; leave trial number ``exclude`` out.

        ``trials`` are a study's trials numbered ``start`` and up, in number order (as
        storages return them), with ``start`` at most :attr:`settled`: the trials before
        the first unfinished one, once indexed, need no second look.
        """
        if start > self._settled:
            raise ValueError(f"trials from number {start} skip unindexed ones")
        unfinished: dict[str, tuple[FrozenTrial, ...]] = {}
        unfinished_ids = set()
        with self._lock:
            # Another thread may have settled more meanwhile; ``_settled`` only grows.
            for t in trials[self._settled - start :]:
                if t.number == exclude or (
                    t.state.is_finished() and self._trial_id(t) in self._seen
                ):
                    continue
                fp = self._fingerprint_of(t)
                if not t.state.is_finished():
                    unfinished_ids.add(self._trial_id(t))
                    if fp is not None:
                        _group(unfinished, fp, t)
                    continue
                self._seen.add(self._trial_id(t))
                if fp is None:
                    continue
                _group(self._finished, fp, t)
                if t.state == TrialState.COMPLETE:
                    self._standings.add(fp, t)
            end = start + len(trials)
            while self._settled < end and trials[self._settled - start].state.is_finished():
                self._settled_id = self._trial_id(trials[self._settled - start])
                self._settled += 1
            newest = self._trial_id(trials[-1]) if trials else -1
            return View(
                self._standings.copy(),
                dict(self._finished),
                unfinished,
                frozenset(unfinished_ids),
                max(newest, self._settled_id),
            )

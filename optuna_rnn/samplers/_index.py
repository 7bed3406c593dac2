"""An incremental index of a study's trials: what the sampler reads at every ask.

A finished trial never changes again, so each one is indexed once (by fingerprint, and
into its architecture when COMPLETE); unfinished trials are re-read at every ask. The
index is a memo of the storage, not state of its own: dropping it changes no proposal.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from optuna_rnn.samplers._population import Architecture

__all__ = ["StudyIndex", "View"]

_Groups = Mapping[str, tuple[FrozenTrial, ...]]


@dataclass(frozen=True)
class View:
    """The study as one ask sees it, without the asking trial.

    ``fingerprint in view`` is the dedupe test: some trial evaluated or claims it.

    Attributes:
        architectures: COMPLETE trials grouped by fingerprint.
        finished: finished trials (any state) by fingerprint.
        unfinished: RUNNING and WAITING trials by fingerprint.
    """

    architectures: Mapping[str, Architecture]
    finished: _Groups
    unfinished: _Groups

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

    def __init__(self, fingerprint_of: Callable[[FrozenTrial], str | None]) -> None:
        self._fingerprint_of = fingerprint_of
        self._lock = threading.Lock()
        self._seen: set[int] = set()
        self._settled = 0
        self._architectures: dict[str, Architecture] = {}
        self._finished: dict[str, tuple[FrozenTrial, ...]] = {}

    def view(self, trials: Sequence[FrozenTrial], *, exclude: int) -> View:
        """Index the new finished trials among ``trials``; leave trial number ``exclude`` out.

        ``trials`` is a study's trials in number order (as storages return them), so
        the trials before the first unfinished one, once indexed, need no second look.
        """
        unfinished: dict[str, tuple[FrozenTrial, ...]] = {}
        with self._lock:
            for t in trials[self._settled :]:
                if t.number == exclude or (t.state.is_finished() and t._trial_id in self._seen):
                    continue
                fp = self._fingerprint_of(t)
                if not t.state.is_finished():
                    if fp is not None:
                        _group(unfinished, fp, t)
                    continue
                self._seen.add(t._trial_id)
                if fp is None:
                    continue
                _group(self._finished, fp, t)
                if t.state == TrialState.COMPLETE:
                    arch = self._architectures.get(fp, Architecture(fp))
                    self._architectures[fp] = arch.with_trial(t)
            while self._settled < len(trials) and trials[self._settled].state.is_finished():
                self._settled += 1
            return View(dict(self._architectures), dict(self._finished), unfinished)

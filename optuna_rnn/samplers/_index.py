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

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn.samplers._population import Architecture

try:  # private to Optuna: used only as a fast path, with the public read as fallback
    from optuna.storages._cached_storage import _CachedStorage
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _CachedStorage = None

__all__ = ["StudyIndex", "View", "trials_from"]

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


def trials_from(storage: BaseStorage, study_id: int, start: int) -> list[FrozenTrial]:
    """The study's trials numbered ``start`` and up, in number order, read from the storage now.

    Optuna's cached SQL storage (what a storage URL gives) fetches only new and unfinished
    trials, but its ``get_all_trials`` sorts the whole study at every call: at 10,000
    trials that sort is most of a read. Its cache, keyed by the trial numbers 0 to n - 1,
    is read past ``start`` instead, so a read costs what is new. Other storages: one
    ``get_all_trials``.
    """
    if _CachedStorage is not None and isinstance(storage, _CachedStorage):
        try:
            storage._read_trials_from_remote_storage(study_id)
            with storage._lock:
                cached = storage._studies[study_id].trials
                return [cached[n] for n in range(start, len(cached))]
        except (AttributeError, KeyError, TypeError):
            pass  # another Optuna version's cache: read the public way below
    return storage.get_all_trials(study_id, deepcopy=False)[start:]


class StudyIndex:
    """Finished trials indexed once; thread-safe (one sampler, several threads)."""

    def __init__(self, fingerprint_of: Callable[[FrozenTrial], str | None]) -> None:
        self._fingerprint_of = fingerprint_of
        self._lock = threading.Lock()
        self._seen: set[int] = set()
        self._settled = 0
        self._architectures: dict[str, Architecture] = {}
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
        with self._lock:
            # Another thread may have settled more meanwhile; ``_settled`` only grows.
            for t in trials[self._settled - start :]:
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
            end = start + len(trials)
            while self._settled < end and trials[self._settled - start].state.is_finished():
                self._settled += 1
            return View(dict(self._architectures), dict(self._finished), unfinished)

"""Every use of Optuna's private API in optuna_rnn, each beside its public fallback.

Nothing else in the package touches a name that starts with ``_`` on an Optuna object or
module. Each private use is a fast path or a handle that Optuna offers no public way to
get; where the installed Optuna lacks it (an ``ImportError`` at import, an attribute that
is not there), the public fallback runs instead. Only those two signs of "this Optuna has
no such internal" are caught: an error inside a fast path is a real error and propagates.
``tests/test_optuna_compat.py`` checks that each private path and its fallback agree.

Supported: the Optuna range in ``setup.cfg`` (``optuna>=4.9,<6`` at the time of writing,
run by CI on the oldest and the newest).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Container
from typing import Any, BinaryIO, Protocol, runtime_checkable

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

try:  # the cached SQL storage: the class and its internals read by the fast paths below
    from optuna.storages._cached_storage import _CachedStorage
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _CachedStorage = None
try:
    from optuna.study._multi_objective import _fast_non_domination_rank
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _fast_non_domination_rank = None
try:
    from optuna.storages._heartbeat import is_heartbeat_enabled as _is_heartbeat_enabled
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _is_heartbeat_enabled = None

__all__ = [
    "ArtifactStore",
    "cached_plans",
    "cached_sql_storage",
    "cached_trials",
    "heartbeat_enabled",
    "non_domination_rank",
    "storage_of",
    "study_id_of",
    "trial_id_of",
]

_CACHE_INTERNALS = ("_lock", "_studies", "_read_trials_from_remote_storage", "_backend")


# ------------------------------------------------------------------ study and trial handles
def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage. Optuna has no public accessor; its own samplers read
    ``study._storage`` as this does. Raises RuntimeError where an Optuna lacks it."""
    storage = getattr(study, "_storage", None)
    if storage is None:  # pragma: no cover - depends on the installed Optuna
        raise RuntimeError(
            f"optuna {optuna.__version__} keeps no study._storage; optuna_rnn's samplers "
            "need the study's storage to keep their state in it"
        )
    return storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage; public fallback: look its name up."""
    study_id = getattr(study, "_study_id", None)
    if study_id is None:
        return storage_of(study).get_study_id_from_name(study.study_name)
    return study_id


def trial_id_of(trial: FrozenTrial | optuna.Trial, storage: BaseStorage, study_id: int) -> int:
    """The trial's id in ``storage``; public fallback: look its number up."""
    trial_id = getattr(trial, "_trial_id", None)
    if trial_id is None:
        return storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    return trial_id


# ---------------------------------------------------------------------------- heartbeat
def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether the storage records heartbeats (as Optuna's ``is_heartbeat_enabled``).

    Public fallback: a storage with an interval from ``get_heartbeat_interval``.
    """
    if _is_heartbeat_enabled is not None:
        return _is_heartbeat_enabled(storage)
    return _heartbeat_public(storage)  # pragma: no cover - depends on the installed Optuna


def _heartbeat_public(storage: BaseStorage) -> bool:
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


# ------------------------------------------------------------------------ artifact store
@runtime_checkable
class ArtifactStore(Protocol):
    """What Optuna's artifact stores do (``optuna.artifacts._protocol.ArtifactStore``,
    which Optuna does not export), as a protocol of our own."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


# ------------------------------------------------------------------ Pareto front ranks
def non_domination_rank(values: np.ndarray) -> np.ndarray:
    """The non-domination rank of each row of ``values`` (all minimised), 0 the best.

    Optuna's fast sort where it has one; public fallback: peel fronts with numpy.
    """
    if _fast_non_domination_rank is not None:
        return _fast_non_domination_rank(values)
    return _peel_fronts(values)  # pragma: no cover - depends on the installed Optuna


def _peel_fronts(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    ranks = np.full(len(values), -1, dtype=int)
    left = np.arange(len(values))
    rank = 0
    while len(left):
        v = values[left]
        dominated = np.array(
            [bool(np.any(np.all(v <= row, axis=1) & np.any(v < row, axis=1))) for row in v]
        )
        ranks[left[~dominated]] = rank
        left = left[dominated]
        rank += 1
    return ranks


# ------------------------------------------------------------- cached SQL storage reads
def _is_cached(storage: BaseStorage) -> bool:
    return (
        _CachedStorage is not None
        and isinstance(storage, _CachedStorage)
        and all(hasattr(storage, name) for name in _CACHE_INTERNALS)
    )


def cached_sql_storage(rdb: optuna.storages.RDBStorage) -> BaseStorage:
    """``rdb`` in Optuna's cache, as ``optuna.create_study(storage=rdb)`` would wrap it,
    except that reads of unfinished trials only look at the unfinished ones.

    Every ``study.ask()`` looks for WAITING trials, and Optuna's cached storage finds them
    by testing the state of every trial of the study in Python: 5-10 ms per ask at 10,000
    trials on a small machine, more than the rest of the ask. The cache already keeps the
    ids of the trials that are not finished; this reads those. Public fallback: ``rdb``
    itself (Optuna wraps it in its cache).
    """
    if _CachedStorage is None:
        return rdb  # pragma: no cover - depends on the installed Optuna
    storage = _UnfinishedFirstCache(rdb)
    if not all(hasattr(storage, name) for name in _UNFINISHED_INTERNALS):
        return rdb  # pragma: no cover - depends on the installed Optuna
    return storage


_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
_UNFINISHED_INTERNALS = (*_CACHE_INTERNALS, "_trial_id_to_study_id_and_number")

if _CachedStorage is not None:

    class _UnfinishedFirstCache(_CachedStorage):
        """Optuna's cached SQL storage; its reads of RUNNING and WAITING trials look at the
        unfinished trials only.

        Once the cache is refreshed, its ``unfinished_trial_ids`` hold every trial whose
        cached state is not finished: the refresh reads every trial above the newest
        finished one (any trial created since) and every unfinished one again.
        """

        def get_all_trials(
            self,
            study_id: int,
            deepcopy: bool = True,
            states: Container[TrialState] | None = None,
        ) -> list[FrozenTrial]:
            if not isinstance(states, tuple | list | set | frozenset) or not set(states) <= set(
                _UNFINISHED
            ):
                return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
            self._read_trials_from_remote_storage(study_id)
            with self._lock:
                study = self._studies[study_id]
                numbers = sorted(
                    self._trial_id_to_study_id_and_number[i][1] for i in study.unfinished_trial_ids
                )
                trials = [study.trials[n] for n in numbers if study.trials[n].state in states]
            return copy.deepcopy(trials) if deepcopy else trials


def cached_trials(
    storage: BaseStorage, study_id: int, start: int, *, refresh: bool
) -> list[FrozenTrial] | None:
    """The study's trials numbered ``start`` and up from the cached SQL storage's cache,
    or ``None`` where the storage is not one or the cache has gaps (then read the public
    way: ``storage.get_all_trials(study_id)[start:]``).

    ``refresh=True`` first fetches the new and unfinished trials, as ``get_all_trials``
    does; ``refresh=False`` reads the cache as it is if it holds every trial up to its
    newest.
    """
    if not _is_cached(storage):
        return None
    tail = None if refresh else _cached_tail(storage, study_id, start)
    if tail is None:
        storage._read_trials_from_remote_storage(study_id)
        tail = _cached_tail(storage, study_id, start)
    return tail


def _cached_tail(storage: Any, study_id: int, start: int) -> list[FrozenTrial] | None:
    with storage._lock:
        study = storage._studies.get(study_id)
        if study is None or not study.trials:  # never read: nothing to go on
            return None
        cached = study.trials
        if any(n not in cached for n in range(start, len(cached))):
            return None  # a trial created elsewhere, not read yet, below one made here
        return [cached[n] for n in range(start, len(cached))]


def cached_plans(
    storage: BaseStorage,
    study_id: int,
    key: str,
    *,
    after: int,
    unfinished: Collection[int],
    exclude: int,
) -> list[Any] | None:
    """The system attr ``key`` of the study's trials with id above ``after`` or in
    ``unfinished``, but ``exclude``, in trial order, in one SQL query; ``None`` where the
    storage is not Optuna's cached SQL storage or its schema is not the one this knows
    (then read each trial the public way).

    The window is a union of an id range and a list of ids: SQLite plans
    ``id > after OR id IN (...)`` as a scan of the study's every trial (2 ms at 10,000
    trials), the union as two index searches (0.05 ms)."""
    if not _is_cached(storage):
        return None
    try:  # imported here: only a cached SQL storage, which has loaded them, gets this far
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:  # pragma: no cover - depends on the installed Optuna
        return None
    from sqlalchemy import select, union_all

    trials = models.TrialModel.__table__
    attrs = models.TrialSystemAttributeModel.__table__
    if not {"trial_id", "study_id"} <= set(trials.c.keys()) or not {
        "trial_id",
        "key",
        "value_json",
    } <= set(attrs.c.keys()):
        return None  # pragma: no cover - another schema

    def plans(*window: Any) -> Any:
        return (
            select(trials.c.trial_id.label("id"), attrs.c.value_json)
            .join(trials, trials.c.trial_id == attrs.c.trial_id)
            .where(
                trials.c.study_id == study_id,
                attrs.c.key == key,
                trials.c.trial_id != exclude,
                *window,
            )
        )

    older = sorted(i for i in unfinished if i <= after)  # newer ones are in the range
    query = plans(trials.c.trial_id > after)
    if older:
        query = union_all(query, plans(trials.c.trial_id.in_(older)))
    query = query.order_by("id")
    with _create_scoped_session(storage._backend.scoped_session) as session:
        values = [value for (_, value) in session.execute(query)]
    return [json.loads(value) for value in values]

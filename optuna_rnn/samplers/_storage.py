"""The sampler's reads of the storage: Optuna's public calls, with fast paths for the
cached SQL storage (what a storage URL gives).

The fast paths use Optuna's private internals and fall back to the public calls wherever
those internals differ from what they expect.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_rnn.samplers._records import PLAN_KEY, Claims

try:  # private to Optuna: used only as a fast path, with the public read as fallback
    from optuna.storages._cached_storage import _CachedStorage
except ImportError:  # pragma: no cover - depends on the installed Optuna
    _CachedStorage = None

__all__ = ["claims_since", "trials_from"]

# What a fast path catches to fall back: another Optuna version's internals.
_INTERNALS_DIFFER = (AttributeError, ImportError, KeyError, TypeError)


def trials_from(
    storage: BaseStorage, study_id: int, start: int, *, refresh: bool = True
) -> list[FrozenTrial]:
    """The study's trials numbered ``start`` and up, in number order.

    Optuna's cached SQL storage fetches only new and unfinished trials, but its
    ``get_all_trials`` sorts the whole study at every call: at 10,000 trials that sort is
    most of a read. Its cache, keyed by the trial numbers 0 to n - 1, is read past
    ``start`` instead, so a read costs what is new. With ``refresh=False`` the cache is
    read as it is, as long as it holds every trial up to its newest (``study.ask()`` has
    just refreshed it, looking for WAITING trials): a possibly older view, which costs no
    round trip. Other storages: one ``get_all_trials``, always current.
    """
    if _CachedStorage is not None and isinstance(storage, _CachedStorage):
        try:
            tail = None if refresh else _cached_tail(storage, study_id, start)
            if tail is None:
                storage._read_trials_from_remote_storage(study_id)
                tail = _cached_tail(storage, study_id, start)
            if tail is not None:
                return tail
        except _INTERNALS_DIFFER:
            pass  # read the public way below
    return storage.get_all_trials(study_id, deepcopy=False)[start:]


def _cached_tail(storage: Any, study_id: int, start: int) -> list[FrozenTrial] | None:
    """The cache's trials from number ``start``, or ``None`` where the cache has gaps."""
    with storage._lock:
        study = storage._studies.get(study_id)
        if study is None or not study.trials:  # never read: nothing to go on
            return None
        cached = study.trials
        try:
            return [cached[n] for n in range(start, len(cached))]
        except KeyError:  # a trial created elsewhere, not read yet, below one made here
            return None


def claims_since(
    storage: BaseStorage,
    study_id: int,
    *,
    after: int,
    unfinished: Collection[int],
    exclude: int,
) -> Claims:
    """The claims on trials newer than id ``after`` or in ``unfinished``, read now.

    These are the trials whose plans may have been written since a view that saw trials
    up to id ``after`` with ``unfinished`` still open; trial id ``exclude`` (the asker) is
    left out. On the cached SQL storage, one query of those trials' plans (the public read
    would fetch each trial whole, in six queries); elsewhere one ``get_all_trials``.
    """
    plans = None
    if _CachedStorage is not None and isinstance(storage, _CachedStorage):
        plans = _plans_in_sql(
            storage, study_id, after=after, unfinished=unfinished, exclude=exclude
        )
    if plans is None:
        plans = [
            t.system_attrs.get(PLAN_KEY)
            for t in storage.get_all_trials(study_id, deepcopy=False)
            if t._trial_id != exclude and (t._trial_id > after or t._trial_id in unfinished)
        ]
    return Claims.of(plans)


def _plans_in_sql(
    storage: Any, study_id: int, *, after: int, unfinished: Collection[int], exclude: int
) -> list[Any] | None:
    """The stored plans of the trials :func:`claims_since` reads, in one SQL query;
    ``None`` where Optuna's schema or internals are not the ones this query knows."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from sqlalchemy import or_, select

        trials = models.TrialModel.__table__
        attrs = models.TrialSystemAttributeModel.__table__
        window = trials.c.trial_id > after
        if unfinished:
            window = or_(window, trials.c.trial_id.in_(list(unfinished)))
        query = (
            select(attrs.c.value_json)
            .join(trials, trials.c.trial_id == attrs.c.trial_id)
            .where(
                trials.c.study_id == study_id,
                attrs.c.key == PLAN_KEY,
                trials.c.trial_id != exclude,
                window,
            )
            .order_by(trials.c.trial_id)
        )
        with _create_scoped_session(storage._backend.scoped_session) as session:
            values = [value for (value,) in session.execute(query)]
    except (*_INTERNALS_DIFFER, StorageInternalError):  # e.g. another schema's columns
        return None
    return [json.loads(value) for value in values]

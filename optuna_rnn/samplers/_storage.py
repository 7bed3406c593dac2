"""The sampler's reads of the storage: Optuna's public calls, with fast paths for the
cached SQL storage (what a storage URL gives), which :mod:`optuna_rnn._optuna_compat`
keeps beside their public fallbacks.
"""

from __future__ import annotations

from collections.abc import Collection

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_rnn._optuna_compat import cached_plans, cached_trials, trial_id_of
from optuna_rnn.samplers._records import PLAN_KEY, Claims

__all__ = ["claims_since", "trials_from"]


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
    tail = cached_trials(storage, study_id, start, refresh=refresh)
    if tail is not None:
        return tail
    return storage.get_all_trials(study_id, deepcopy=False)[start:]


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
    window = {"after": after, "unfinished": unfinished, "exclude": exclude}
    plans = cached_plans(storage, study_id, PLAN_KEY, **window)
    if plans is None:
        plans = []
        for t in storage.get_all_trials(study_id, deepcopy=False):
            trial_id = trial_id_of(t, storage, study_id)
            if trial_id != exclude and (trial_id > after or trial_id in unfinished):
                plans.append(t.system_attrs.get(PLAN_KEY))
    return Claims.of(plans)

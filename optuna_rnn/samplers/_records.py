"""What the evolution sampler writes into a trial's system attrs, and reads back.

Every piece of cross-trial state lives here, in the storage: a trial's fingerprint (its
claim on an architecture), and its plan (how it was proposed and the parameter values the
sampler owns for it). Threads, processes and machines that share the storage therefore
share one population; the sampler object itself holds nothing but its settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

__all__ = [
    "FINGERPRINT_KEY",
    "PLAN_KEY",
    "Plan",
    "fingerprint_of",
    "hyperparameter_key",
    "read_plan",
    "write_plan",
]

_PREFIX = "cell_evolution:"
FINGERPRINT_KEY = _PREFIX + "fingerprint"
PLAN_KEY = _PREFIX + "plan"
#: The user attr the objective writes (issue 5); read for trials this sampler never planned.
_OBJECTIVE_FINGERPRINT = "fingerprint"

MUTATE = "mutate"
REEVALUATE = "reevaluate"
ENQUEUED = "enqueued"


@dataclass(frozen=True)
class Plan:
    """How one trial's architecture was chosen, and the parameters the sampler fixes for it.

    Attributes:
        action: ``"mutate"``, ``"reevaluate"`` or ``"enqueued"``.
        fingerprint: the planned architecture.
        params: parameter values the sampler owns for this trial (the architecture's, and
            for a re-evaluation also the new hyperparameter draw); external representation.
        distributions: the distribution of each entry of ``params``.
        hyperparameters: which of ``params`` are hyperparameters rather than architecture.
        parent: the fingerprint mutated or re-evaluated, if any.
        mutations: the transformations :func:`optuna_rnn.mutate` applied, in order.
    """

    action: str
    fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    hyperparameters: tuple[str, ...] = ()
    parent: str | None = None
    mutations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "distributions": {k: distribution_to_json(d) for k, d in self.distributions.items()},
            "hyperparameters": list(self.hyperparameters),
            "parent": self.parent,
            "mutations": list(self.mutations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            action=data["action"],
            fingerprint=data["fingerprint"],
            params=dict(data["params"]),
            distributions={
                k: json_to_distribution(v) for k, v in data["distributions"].items()
            },
            hyperparameters=tuple(data["hyperparameters"]),
            parent=data["parent"],
            mutations=tuple(data["mutations"]),
        )


def write_plan(storage: BaseStorage, trial_id: int, plan: Plan) -> None:
    """Store ``plan`` and claim its fingerprint for the trial (visible to every worker)."""
    storage.set_trial_system_attr(trial_id, PLAN_KEY, plan.to_json())
    storage.set_trial_system_attr(trial_id, FINGERPRINT_KEY, plan.fingerprint)


def read_plan(trial: FrozenTrial) -> Plan | None:
    """The plan stored for ``trial``, or ``None`` when the sampler made none."""
    data = trial.system_attrs.get(PLAN_KEY)
    return None if data is None else Plan.from_json(data)


def fingerprint_of(trial: FrozenTrial) -> str | None:
    """The architecture a trial claims or evaluated: the sampler's record, else the objective's."""
    fp = trial.system_attrs.get(FINGERPRINT_KEY)
    if fp is None:
        fp = trial.user_attrs.get(_OBJECTIVE_FINGERPRINT)
    return fp if isinstance(fp, str) else None


def hyperparameter_key(params: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """A comparable key of one hyperparameter draw (the values of ``names`` in ``params``)."""
    return json.dumps([[n, params.get(n)] for n in sorted(names)], default=repr)

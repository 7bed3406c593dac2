"""What the evolution sampler writes into a trial's system attrs, and reads back.

Every piece of cross-trial state lives here, in the storage: a trial's plan (an
:class:`ArchitectureChoice`: its claim on an architecture, how it was proposed and the
parameter values the sampler owns for it, written in one storage call), and, where it
differs, the fingerprint it evaluated. Threads, processes and machines that share the
storage therefore share one population; the sampler object itself holds nothing but its
settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_rnn.keys import EVOLUTION_FINGERPRINT as FINGERPRINT_KEY
from optuna_rnn.keys import EVOLUTION_PLAN as PLAN_KEY
from optuna_rnn.keys import FINGERPRINT as _OBJECTIVE_FINGERPRINT

__all__ = [
    "FINGERPRINT_KEY",
    "PLAN_KEY",
    "ArchitectureChoice",
    "Claims",
    "drawn_params",
    "fingerprint_of",
    "hyperparameter_key",
    "read_plan",
    "write_plan",
]

MUTATE = "mutate"
REEVALUATE = "reevaluate"
ENQUEUED = "enqueued"
RANDOM = "random"


@dataclass(frozen=True)
class ArchitectureChoice:
    """How one trial's architecture was chosen, and the parameters the sampler fixes for it.

    Attributes:
        action: ``"mutate"``, ``"reevaluate"``, ``"enqueued"`` or ``"random"`` (a new
            random cell of the space: an unseeded study's start).
        fingerprint: the planned architecture.
        params: parameter values the sampler owns for this trial (the architecture's, and
            for a re-evaluation also the new hyperparameter draw); external representation.
        hyperparameters: the distributions of the hyperparameters among ``params`` (the
            architecture's come from the space, so they are not repeated in every trial).
        parent: the fingerprint mutated or re-evaluated, if any.
        mutations: the transformations :func:`optuna_rnn.mutate` applied, in order.
    """

    action: str
    fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, BaseDistribution] = field(default_factory=dict)
    parent: str | None = None
    mutations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "hyperparameters": {
                k: distribution_to_json(d) for k, d in self.hyperparameters.items()
            },
            "parent": self.parent,
            "mutations": list(self.mutations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchitectureChoice:
        return cls(
            action=data["action"],
            fingerprint=data["fingerprint"],
            params=dict(data["params"]),
            hyperparameters={
                k: json_to_distribution(v) for k, v in data["hyperparameters"].items()
            },
            parent=data["parent"],
            mutations=tuple(data["mutations"]),
        )


def write_plan(storage: BaseStorage, trial_id: int, plan: ArchitectureChoice | None) -> None:
    """Store ``plan``, claiming its fingerprint for the trial (``None`` withdraws it)."""
    storage.set_trial_system_attr(trial_id, PLAN_KEY, None if plan is None else plan.to_json())


def read_plan(trial: FrozenTrial) -> ArchitectureChoice | None:
    """The plan stored for ``trial``, or ``None`` when the sampler made none."""
    data = trial.system_attrs.get(PLAN_KEY)
    return None if data is None else ArchitectureChoice.from_json(data)


def fingerprint_of(trial: FrozenTrial) -> str | None:
    """The architecture a trial evaluated or claims, as recorded.

    In order: what it evaluated (written after the trial when that differs from its
    plan), its plan, the fingerprint the objective put in its user attrs.
    """
    attrs = trial.system_attrs
    if FINGERPRINT_KEY in attrs:
        return attrs[FINGERPRINT_KEY]
    plan = attrs.get(PLAN_KEY)
    if plan is not None:
        return plan["fingerprint"]
    fp = trial.user_attrs.get(_OBJECTIVE_FINGERPRINT)
    return fp if isinstance(fp, str) else None


def hyperparameter_key(params: Mapping[str, Any], names: Iterable[str]) -> str:
    """A comparable key of one hyperparameter draw (the values of ``names`` in ``params``)."""
    return json.dumps([[n, params.get(n)] for n in sorted(names)], default=repr)


def drawn_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameter values a trial drew, or was planned to draw where it has not yet."""
    plan = trial.system_attrs.get(PLAN_KEY)
    return {**(plan["params"] if plan is not None else {}), **trial.params}


@dataclass(frozen=True)
class Claims:
    """Evaluations that plans claim: each claimed fingerprint with each claim's params.

    Attributes:
        draws: fingerprint -> the params of every plan that claims it.
    """

    draws: Mapping[str, Sequence[Mapping[str, Any]]]

    @classmethod
    def of(cls, plans: Iterable[Mapping[str, Any] | None]) -> Claims:
        """The claims of stored plans (``ArchitectureChoice.to_json`` output; ``None``:
        withdrawn)."""
        draws: dict[str, list[Mapping[str, Any]]] = {}
        for plan in plans:
            if plan is not None:
                draws.setdefault(plan["fingerprint"], []).append(plan["params"])
        return cls(draws)

    def take(self, plan: ArchitectureChoice) -> bool:
        """Whether these claims take the evaluation ``plan`` proposes: its architecture, or
        for a re-evaluation, the same hyperparameter draw on its architecture."""
        if plan.action != REEVALUATE:
            return plan.fingerprint in self.draws
        key = hyperparameter_key(plan.params, plan.hyperparameters)
        return any(
            hyperparameter_key(params, plan.hyperparameters) == key
            for params in self.draws.get(plan.fingerprint, ())
        )

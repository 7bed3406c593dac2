"""The hyperparameter choice lists a trial samples from, per optimizer.

A plain configuration value, shared by the objective, the study helpers and the command
line; importing it imports neither torch nor any other optuna-rnn module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import optuna

__all__ = ["ADAM_LEARNING_RATES", "PAPER_DROPOUTS", "Hyperparameters"]

#: The paper's dropout choices for its dropout runs (its search used none).
PAPER_DROPOUTS = (0.0, 0.1, 0.3, 0.5)
#: Learning rates for ``optimizer="adam"`` (a project convention; the paper used SGD).
ADAM_LEARNING_RATES = (1e-3, 2e-3, 5e-3, 1e-2)

_FIELDS = (
    "init_scales",
    "learning_rates",
    "max_grad_norms",
    "layer_counts",
    "param_budgets",
    "dropouts",
)


@dataclass(frozen=True)
class Hyperparameters:
    """The choice lists a trial samples its hyperparameters from.

    Defaults are the paper's, except the parameter budgets (the paper went up to 20M)
    and dropout (the paper's search used none; pass :data:`PAPER_DROPOUTS` for its
    dropout runs). Each is one categorical Optuna parameter, named in :attr:`names`.
    :meth:`for_optimizer` gives the defaults of another optimizer, with some lists
    replaced.
    """

    init_scales: Sequence[float] = (0.3, 0.7, 1.0, 1.4, 2.0, 2.8)
    learning_rates: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
    max_grad_norms: Sequence[float] = (1.0, 2.5, 5.0, 10.0, 20.0)
    layer_counts: Sequence[int] = (1, 2, 3, 4)
    param_budgets: Sequence[int] = (10_000, 25_000, 50_000)
    dropouts: Sequence[float] = (0.0,)

    #: The Optuna parameter names, in the order of the fields above.
    names: ClassVar[tuple[str, ...]] = (
        "init_scale",
        "learning_rate",
        "max_grad_norm",
        "num_layers",
        "param_budget",
        "dropout",
    )

    def __post_init__(self) -> None:
        for field_name, choices in self._choices().items():
            if len(choices) == 0:
                raise ValueError(f"Hyperparameters.{field_name} has no choices")
        checks = {
            "init_scales": lambda v: v > 0,
            "learning_rates": lambda v: v > 0,
            "max_grad_norms": lambda v: v > 0,
            "layer_counts": lambda v: isinstance(v, int) and v >= 1,
            "param_budgets": lambda v: isinstance(v, int) and v >= 1,
            "dropouts": lambda v: 0 <= v < 1,
        }
        for field_name, ok in checks.items():
            bad = [v for v in getattr(self, field_name) if not ok(v)]
            if bad:
                raise ValueError(f"Hyperparameters.{field_name} has invalid choices {bad}")

    @classmethod
    def for_optimizer(
        cls, optimizer: str, overrides: Mapping[str, Sequence[Any]] | None = None
    ) -> Hyperparameters:
        """The defaults for ``optimizer``, with the lists ``overrides`` names replaced.

        ``"adam"`` samples :data:`ADAM_LEARNING_RATES`, any other optimizer the paper's
        SGD rates. A partial setting such as ``{"param_budgets": [500_000]}`` thus keeps
        the optimizer's learning rates.
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter lists {unknown}; expected some of {list(_FIELDS)}"
            )
        defaults = cls(learning_rates=ADAM_LEARNING_RATES) if optimizer == "adam" else cls()
        return dataclasses.replace(defaults, **overrides)

    def _choices(self) -> dict[str, tuple]:
        return {f: tuple(getattr(self, f)) for f in _FIELDS}

    def choices(self) -> dict[str, tuple]:
        """Each Optuna parameter name (:attr:`names`) with its choice list."""
        return dict(zip(self.names, self._choices().values(), strict=True))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample the hyperparameters; returns ``{name: value}`` for all of them.

        A choice list of one value is no decision and, as in the search spaces, not an
        Optuna parameter.
        """
        return {
            name: trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]
            for name, choices in self.choices().items()
        }

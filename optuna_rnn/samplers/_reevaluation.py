"""Re-evaluation: train a known architecture again with a hyperparameter draw not yet tried."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from typing import Any

from optuna.distributions import BaseDistribution

from optuna_rnn.samplers._records import hyperparameter_key

__all__ = ["Reevaluation"]


class Reevaluation:
    """Draw hyperparameters until the draw is new for the architecture.

    The paper re-trained a random population member with new random hyperparameters,
    "never one already tried"; the draws come from the sampler's hyperparameter sampler,
    over the distributions the architecture's best trial used.

    Args:
        max_attempts: draws before giving up (a small discrete grid can be exhausted).
    """

    def __init__(self, *, max_attempts: int = 20) -> None:
        self.max_attempts = max_attempts

    def __call__(
        self,
        distributions: Mapping[str, BaseDistribution],
        tried: Container[str],
        draw: Callable[[str, BaseDistribution], Any],
    ) -> dict[str, Any] | None:
        """A draw over ``distributions`` whose key is not in ``tried``, or ``None``."""
        if not distributions:
            return None
        names = tuple(distributions)
        for _ in range(self.max_attempts):
            params = {name: draw(name, dist) for name, dist in distributions.items()}
            if hyperparameter_key(params, names) not in tried:
                return params
        return None

"""Parent selection: a tournament over a population sorted best first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["TournamentSelection"]

T = TypeVar("T")


class TournamentSelection:
    """Draw ``size`` members at random (without replacement) and keep the best.

    ``size=1`` is the paper's uniform choice from the population; regularised evolution
    needs ``size > 1``, as aging alone exerts no selection pressure.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"tournament size must be at least 1, got {size}")
        self.size = size

    def __call__(self, ranked: Sequence[T], rng: np.random.Generator) -> T:
        """One member of ``ranked`` (best first, non-empty)."""
        k = min(self.size, len(ranked))
        return ranked[int(rng.choice(len(ranked), size=k, replace=False).min())]

"""Mutation proposal: a mutant of a parent that the space holds and the study has not seen."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from optuna_rnn.cell import Cell, CellError
from optuna_rnn.cell.mutate import Mutation

if TYPE_CHECKING:
    from optuna_rnn.spaces import CellSpace

__all__ = ["Mutant", "MutationOperator", "MutationProposal", "PointMutation"]

#: Any callable ``(cell, rng) -> cell``; returning a :class:`~optuna_rnn.cell.mutate.Mutation`
#: (``mutate(..., return_log=True)``) also records which transformations fired.
MutationOperator = Callable[[Cell, np.random.Generator], Cell | Mutation]


@dataclass(frozen=True)
class Mutant:
    """A proposed child: the cell, its params in the space, and what was done to the parent."""

    cell: Cell
    params: dict[str, Any]
    log: tuple[str, ...] = ()


class MutationProposal:
    """Mutate a parent until the mutant is new and fits the space.

    Args:
        mutation: the operator, any callable ``(cell, rng) -> cell`` (see
            :data:`MutationOperator`); it may raise CellError when it finds no mutant.
        encode: the cell's params in the search space, CellError if the space does not
            hold it (such a mutant is useless: the objective suggests cells through it).
        max_attempts: mutants drawn before giving up on this parent.
        viable: a test every mutant must pass (e.g. :func:`optuna_rnn.cell.live`); one
            that fails is drawn again, as one that the study has seen is. ``None``: none.
    """

    def __init__(
        self,
        mutation: MutationOperator,
        *,
        encode: Callable[[Cell], dict[str, Any]],
        max_attempts: int = 50,
        viable: Callable[[Cell], bool] | None = None,
    ) -> None:
        self.mutation = mutation
        self.encode = encode
        self.max_attempts = max_attempts
        self.viable = viable

    def __call__(
        self, parent: Cell, rng: np.random.Generator, taken: Container[str], *, steps: int = 1
    ) -> Mutant | None:
        """A viable mutant, ``steps`` mutations away, whose fingerprint is not in ``taken``
        (and differs from the parent's), or ``None``."""
        for _ in range(self.max_attempts):
            cell, log = parent, []
            try:
                for _ in range(steps):
                    cell = self._mutate(cell, rng, log)
            except CellError:
                return None  # the operator finds no mutant of this parent
            if cell.fingerprint in taken or cell.fingerprint == parent.fingerprint:
                continue
            if self.viable is not None and not self.viable(cell):
                continue
            try:
                return Mutant(cell, self.encode(cell), tuple(log))
            except CellError:
                continue
        return None

    def _mutate(self, cell: Cell, rng: np.random.Generator, log: list[str]) -> Cell:
        out = self.mutation(cell, rng)
        if isinstance(out, Mutation):
            log.extend(f"{s.transformation}: {s.detail}" for s in out.steps)
            return out.cell
        if not isinstance(out, Cell):
            raise TypeError(f"a mutation must return a Cell, got {type(out).__name__}")
        return out


class PointMutation:
    """Mutation in the space's encoding: one of the cell's parameters takes another of
    its choices, and any parameter that brings in is drawn at random; what the cell no
    longer uses is dropped. Regularised evolution (Real et al., 2019) mutates this way,
    one operation or one input at a time; the child stays a point of the space.

    Args:
        space: the space whose parameters are mutated.
    """

    def __init__(self, space: CellSpace) -> None:
        self.space = space

    def __call__(self, cell: Cell, rng: np.random.Generator) -> Cell:
        """A neighbour of ``cell`` in the space (CellError if the space cannot hold it)."""
        params = self.space.encode(cell)
        distributions = self.space.distributions(params)
        if not distributions:
            raise CellError("the cell has no parameter to mutate")
        name = sorted(distributions)[int(rng.integers(len(distributions)))]
        others = [c for c in distributions[name].choices if c != params[name]]
        params[name] = others[int(rng.integers(len(others)))]
        return self.space.sample(rng, kept=params)[0]

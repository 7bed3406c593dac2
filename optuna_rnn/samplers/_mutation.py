"""Mutation proposal: a mutant of a parent that the space holds and the study has not seen."""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

import numpy as np

from optuna_rnn.cell import Cell, CellError
from optuna_rnn.cell.mutate import Mutation, mutate

__all__ = ["MutationProposal"]


class MutationProposal:
    """Mutate a parent with :func:`optuna_rnn.mutate` until the mutant is new and fits.

    Args:
        max_nodes: the node limit passed to :func:`optuna_rnn.mutate`.
        encode: the cell's params in the search space, CellError if the space does not
            hold it (such a mutant is useless: the objective suggests cells through it).
        max_attempts: mutants drawn before giving up on this parent.
    """

    def __init__(
        self,
        *,
        max_nodes: int,
        encode: Callable[[Cell], dict[str, Any]],
        max_attempts: int = 50,
    ) -> None:
        self.max_nodes = max_nodes
        self.encode = encode
        self.max_attempts = max_attempts

    def __call__(
        self, parent: Cell, rng: np.random.Generator, taken: Container[str]
    ) -> tuple[Mutation, dict[str, Any]] | None:
        """A mutant whose fingerprint is not in ``taken`` and its params, or ``None``."""
        for _ in range(self.max_attempts):
            try:
                mutation = mutate(parent, rng, max_nodes=self.max_nodes, return_log=True)
            except CellError:
                return None
            if mutation.cell.fingerprint in taken:
                continue
            try:
                return mutation, self.encode(mutation.cell)
            except CellError:
                continue
        return None

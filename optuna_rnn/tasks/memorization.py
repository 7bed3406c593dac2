"""The paper's memorisation pre-filter: read k symbols, then reproduce them in order."""

from __future__ import annotations

import random
import string

from optuna_rnn.tasks.draws import word
from optuna_rnn.tasks.synthetic import SyntheticTask

__all__ = ["Memorization"]

SEPARATOR = "="


class Memorization(SyntheticTask):
    """Read ``length`` random letters, a ``=``, then reproduce the letters.

    Project convention: one sequence is ``"qzkca=qzkca"``; the network predicts each next
    character and only the ``length`` reproduced letters are scored (teacher forcing, so
    the previous reproduced letter is visible while predicting the next). The paper's
    pre-filter threshold is 95% accuracy.

    Args:
        length: symbols to memorise (paper: 5).
        alphabet: how many letters ``a``, ``b``, ... may appear (paper: 26).
        eval_size, seed, valid_fraction, test_fraction: see :class:`SyntheticTask`.
    """

    name = "memorization"

    def __init__(
        self,
        *,
        length: int = 5,
        alphabet: int = 26,
        eval_size: int = 1000,
        seed: int = 0,
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
    ) -> None:
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if not 2 <= alphabet <= 26:
            raise ValueError(f"alphabet must be between 2 and 26 letters, got {alphabet}")
        self.length = length
        self.letters = string.ascii_lowercase[:alphabet]
        self._scored = [False] * (length + 1) + [True] * length  # render copies it
        super().__init__(
            symbols=self.letters + SEPARATOR,
            eval_size=eval_size,
            seed=seed,
            valid_fraction=valid_fraction,
            test_fraction=test_fraction,
        )

    def sample_problem(self, rng: random.Random) -> str:
        return word(rng, self.letters, self.length)

    def problem_count(self) -> int:
        return len(self.letters) ** self.length

    def sample_problems(self, rng: random.Random, most: int) -> list[str]:
        # Rendering draws nothing, so ``most`` problems are consecutive ``length``-letter
        # slices of one word drawn at once.
        letters = word(rng, self.letters, self.length * most)
        return [
            letters[start : start + self.length] for start in range(0, len(letters), self.length)
        ]

    def render(self, problem: str, rng: random.Random) -> tuple[str, list[bool]]:
        return problem + SEPARATOR + problem, self._scored.copy()

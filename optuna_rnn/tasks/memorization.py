"""The paper's memorisation pre-filter: read k symbols, then reproduce them in order."""

from __future__ import annotations

import random
import string

from optuna_rnn.tasks.draws import word
from optuna_rnn.tasks.synthetic import SplitName, SyntheticTask

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

    def examples(
        self, split: SplitName, rng: random.Random, count: int
    ) -> list[tuple[str, list[bool]]]:
        # Rendering draws nothing, so the problems are the first ``count`` of ``split``
        # among consecutive ``length``-letter slices of the stream: a round draws them
        # as one word, a problem for each one missing (never one past the last taken).
        owner = self._owner()
        found: list[tuple[str, list[bool]]] = []
        misses = 0
        while len(found) < count:
            letters = word(rng, self.letters, self.length * (count - len(found)))
            for start in range(0, len(letters), self.length):
                problem = letters[start : start + self.length]
                if owner(problem) == split:
                    found.append(self.render(problem, rng))
                    misses = 0
                else:
                    misses += 1
                    if misses == self.max_rejections:
                        raise self._no_problem(split)
        return found

    def render(self, problem: str, rng: random.Random) -> tuple[str, list[bool]]:
        return problem + SEPARATOR + problem, self._scored.copy()

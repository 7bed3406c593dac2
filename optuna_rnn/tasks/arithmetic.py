"""The paper's arithmetic task: a sum or difference read through distractor letters."""

from __future__ import annotations

import random
import string
from typing import Any

from optuna_rnn.tasks.draws import below
from optuna_rnn.tasks.synthetic import SyntheticTask, resolve_preset

__all__ = ["Arithmetic"]

END = "."
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"max_digits": 8, "negatives": True, "distractor_prob": 0.5, "eval_size": 1000},
    "small": {"max_digits": 2, "negatives": True, "distractor_prob": 0.2, "eval_size": 1000},
    "tiny": {"max_digits": 1, "negatives": False, "distractor_prob": 0.1, "eval_size": 100},
}


class Arithmetic(SyntheticTask):
    """Read ``a+b=`` or ``a-b=`` character by character, then emit the result and ``.``.

    Example (paper preset): ``3e36d9-h1h39f94eeh43keg3c=-13991064.``. Project conventions,
    all parameters:

    * operands are non-negative with a digit count drawn uniformly from
      ``1..max_digits`` and then a value uniform among numbers of that many digits (so
      short numbers are as common as long ones); the operator is ``+`` or ``-`` with
      probability 1/2;
    * ``negatives``: whether a difference may be negative; without it the operands of a
      difference are ordered so that it is not;
    * after every input character but ``=``, another random lowercase distractor letter
      follows with probability ``distractor_prob`` (a geometric count, mean
      ``p / (1 - p)``; the paper's example has about one per gap, so "paper" uses 0.5);
    * the result is written most significant digit first and ended by ``.``; the scored
      characters are the result's (sign included) and, if ``score_end``, the ``.``.

    A problem is ``(a, op, b)``; distractors are drawn afresh each time, so a validation
    or test problem never appears in training with any distractors.

    Args:
        preset: ``"paper"``, ``"small"`` (learnable by a small GRU on a CPU in minutes) or
            ``"tiny"`` (for tests). The keyword arguments below override it.
    """

    name = "arithmetic"

    def __init__(
        self,
        preset: str = "small",
        *,
        max_digits: int | None = None,
        negatives: bool | None = None,
        distractor_prob: float | None = None,
        score_end: bool = True,
        eval_size: int | None = None,
        seed: int = 0,
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
    ) -> None:
        settings = resolve_preset(
            PRESETS,
            preset,
            {
                "max_digits": max_digits,
                "negatives": negatives,
                "distractor_prob": distractor_prob,
                "eval_size": eval_size,
            },
        )
        if settings["max_digits"] < 1:
            raise ValueError(f"max_digits must be positive, got {settings['max_digits']}")
        if not 0 <= settings["distractor_prob"] < 1:
            raise ValueError(
                f"distractor_prob must lie in [0, 1), got {settings['distractor_prob']}"
            )
        self.preset = preset
        self.max_digits: int = settings["max_digits"]
        self.negatives: bool = settings["negatives"]
        self.distractor_prob: float = settings["distractor_prob"]
        self.score_end = score_end
        # (lowest, count) of the operands with 1, 2, ... digits
        lows = [0, *(10 ** (d - 1) for d in range(2, self.max_digits + 1))]
        self._operand_ranges = [(low, 10**d - low) for d, low in enumerate(lows, start=1)]
        super().__init__(
            symbols=string.digits + "+-=" + END + string.ascii_lowercase,
            eval_size=settings["eval_size"],
            seed=seed,
            valid_fraction=valid_fraction,
            test_fraction=test_fraction,
        )

    def problem_count(self) -> int:
        return 2 * 10 ** (2 * self.max_digits)  # two operands below 10**max_digits, two ops

    def _operand(self, rng: random.Random) -> int:
        low, span = self._operand_ranges[below(rng, self.max_digits)]
        return low + below(rng, span)

    def sample_problem(self, rng: random.Random) -> tuple[int, str, int]:
        a, minus, b = self._operand(rng), below(rng, 2), self._operand(rng)
        if minus and not self.negatives and a < b:
            a, b = b, a
        return a, "+-"[minus], b

    def render(self, problem: tuple[int, str, int], rng: random.Random) -> tuple[str, list[bool]]:
        a, op, b = problem
        uniform, p = rng.random, self.distractor_prob
        question = ""
        for char in f"{a}{op}{b}":
            question += char
            while uniform() < p:
                question += string.ascii_lowercase[below(rng, 26)]
        answer = str(a + b if op == "+" else a - b)
        scored = [False] * (len(question) + 1) + [True] * len(answer)
        scored.append(self.score_end)
        return f"{question}={answer}{END}", scored

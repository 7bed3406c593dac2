"""The paper's synthetic XML: predict the next character of randomly nested tags."""

from __future__ import annotations

import random
import string
from typing import Any, Literal

from optuna_rnn.tasks.draws import below, word
from optuna_rnn.tasks.synthetic import SyntheticTask, resolve_preset

__all__ = ["XML"]

LETTERS = string.ascii_lowercase
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"max_tag_len": 10, "max_depth": 8, "length": 64, "eval_size": 1000},
    "small": {"max_tag_len": 3, "max_depth": 4, "length": 32, "eval_size": 1000},
    "tiny": {"max_tag_len": 2, "max_depth": 2, "length": 16, "eval_size": 100},
}


def scored_positions(text: str, span: Literal["name", "closing"]) -> list[bool]:
    """Which characters of ``text`` are scored: those of each closing tag after ``</``.

    ``span="name"`` scores the tag name's letters, ``"closing"`` also the final ``>``;
    both are determined by the matching opening tag, unlike everything else.
    """
    scored = [False] * len(text)
    inside = False
    for i, char in enumerate(text):
        if inside:
            if char == ">":
                inside = False
                scored[i] = span == "closing"
            else:
                scored[i] = True
        elif char == "/" and i > 0 and text[i - 1] == "<":
            inside = True
    return scored


class XML(SyntheticTask):
    """Character-level modelling of a random, well-nested XML stream.

    A document starts empty; at each step it closes the most recent open tag or opens a
    new one with probability 1/2 each (it must open at depth 0 and close at
    ``max_depth``). Tag names are 1 to ``max_tag_len`` random lowercase letters, uniform
    in length. A sequence is the first ``length`` characters of such a document, e.g.
    ``<qa><b></b></qa><xyz>...``.

    Project conventions, all parameters: the exact depth limit, the sequence length, and
    the scored span (``"closing"``: the name letters after ``</`` and the ``>``;
    ``"name"``: the letters only). Only these characters are predictable from memory,
    so only they are scored. The whole document is the problem that decides its split.

    Args:
        preset: ``"paper"`` (names of 1-10 letters as in the paper; depth and length are
            project choices), ``"small"`` (learnable by a small GRU on a CPU in minutes)
            or ``"tiny"`` (for tests). The keyword arguments below override it.
    """

    name = "xml"

    def __init__(
        self,
        preset: str = "small",
        *,
        max_tag_len: int | None = None,
        max_depth: int | None = None,
        length: int | None = None,
        score_span: Literal["name", "closing"] = "closing",
        eval_size: int | None = None,
        seed: int = 0,
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
    ) -> None:
        settings = resolve_preset(
            PRESETS,
            preset,
            {
                "max_tag_len": max_tag_len,
                "max_depth": max_depth,
                "length": length,
                "eval_size": eval_size,
            },
        )
        for key in ("max_tag_len", "max_depth", "length"):
            if settings[key] < 1:
                raise ValueError(f"{key} must be positive, got {settings[key]}")
        if score_span not in ("name", "closing"):
            raise ValueError(f"score_span must be 'name' or 'closing', got {score_span!r}")
        self.preset = preset
        self.max_tag_len: int = settings["max_tag_len"]
        self.max_depth: int = settings["max_depth"]
        self.length: int = settings["length"]
        self.score_span = score_span
        super().__init__(
            symbols=LETTERS + "</>",
            eval_size=settings["eval_size"],
            seed=seed,
            valid_fraction=valid_fraction,
            test_fraction=test_fraction,
        )

    def sample_problem(self, rng: random.Random) -> str:
        uniform, max_depth, length = rng.random, self.max_depth, self.length
        text = ""
        open_tags: list[str] = []
        while len(text) < length:
            if open_tags and (len(open_tags) >= max_depth or uniform() < 0.5):
                text += f"</{open_tags.pop()}>"
                continue
            open_tags.append(word(rng, LETTERS, 1 + below(rng, self.max_tag_len)))
            text += f"<{open_tags[-1]}>"
        return text[:length]

    def render(self, problem: str, rng: random.Random) -> tuple[str, list[bool]]:
        return problem, scored_positions(problem, self.score_span)

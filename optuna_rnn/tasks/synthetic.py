"""Independently sampled, teacher-forced character problems with hash-partitioned splits.

Memorization, Arithmetic and XML share this machinery. Each sequence is a string of
characters with a flag per character saying whether predicting it is scored. The network
reads character ``i`` and predicts character ``i + 1`` (teacher forcing); the mask marks
the scored targets, so the loss trains and the accuracy scores exactly those.

No validation or test problem appears in training: a problem (the operands of a sum, the
symbols to memorise, a whole XML document) belongs to the split that a keyed hash of it
selects, and each split samples only its own problems. Randomness that is not part of the
problem (arithmetic's distractor letters) is drawn afresh.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import random
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from optuna_rnn.tasks.base import Batch, Split, Task, check_split
from optuna_rnn.tasks.vocab import Vocabulary

__all__ = ["SyntheticTask", "pad_batch", "resolve_preset"]

SplitName = Literal["train", "valid", "test"]
_MAX_REJECTIONS = 100_000


@functools.cache
def _keyed_hash(key: bytes) -> Any:
    """An empty keyed BLAKE2b of the split hash, to copy: a copy costs a third of keying
    a new one."""
    return hashlib.blake2b(digest_size=8, key=key)


def resolve_preset(
    presets: Mapping[str, Mapping[str, Any]], preset: str, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The preset's settings with every non-``None`` override applied."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    settings = dict(presets[preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def pad_batch(sequences: Sequence[tuple[list[int], list[bool]]]) -> Batch:
    """Teacher-forced, time-major batch of ``(ids, scored)`` sequences, padded with id 0.

    Position ``t`` reads ``ids[t]`` and targets ``ids[t + 1]``, counted iff
    ``scored[t + 1]``; padding is never counted. One tensor per field from padded rows:
    a tensor per sequence and field cost a short trial step a fifth of its time.
    """
    for ids, scored in sequences:
        if len(scored) != len(ids):
            raise ValueError(f"a sequence of {len(ids)} ids has {len(scored)} scored flags")
    steps = max(len(ids) for ids, _ in sequences) - 1

    def field(rows: list[list[Any]], pad: object, dtype: type) -> torch.Tensor:
        # numpy reads nested lists about three times faster than torch.tensor does
        return torch.from_numpy(
            np.array([row + [pad] * (steps - len(row)) for row in rows], dtype=dtype).T.copy()
        )

    return Batch(
        field([ids[:-1] for ids, _ in sequences], 0, np.int64),
        field([ids[1:] for ids, _ in sequences], 0, np.int64),
        field([scored[1:] for _, scored in sequences], False, np.bool_),
    )


class SyntheticTask(Task):
    """Base for generated character tasks scored by accuracy on flagged characters.

    Subclasses implement :meth:`sample_problem` and :meth:`render`.

    Args:
        symbols: the characters of the vocabulary (the id of a character is its index).
        eval_size: sequences in each of the validation and test sets.
        seed: seeds the validation and test sets and keys the split hash.
        valid_fraction: share of the problem space reserved for validation.
        test_fraction: share of the problem space reserved for testing.
    """

    input_kind = "tokens"
    output_kind = "categorical"
    score_name = "accuracy"
    higher_is_better = True

    def __init__(
        self,
        *,
        symbols: str,
        eval_size: int,
        seed: int,
        valid_fraction: float,
        test_fraction: float,
    ) -> None:
        if eval_size < 1:
            raise ValueError(f"eval_size must be positive, got {eval_size}")
        if min(valid_fraction, test_fraction) <= 0 or valid_fraction + test_fraction >= 1:
            raise ValueError(
                "valid_fraction and test_fraction must be positive and sum to less than 1, "
                f"got {valid_fraction} and {test_fraction}"
            )
        self._vocabulary = Vocabulary(symbols)
        self.vocab = self._vocabulary.symbols
        self.input_size = self.output_size = len(self._vocabulary)
        self.eval_size = eval_size
        self.seed = seed
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        self._eval_sets: dict[str, list[tuple[list[int], list[bool]]]] = {}
        # Padded validation and test batches by (split, batch size): a trial validates
        # the same sequences every ``eval_every`` steps.
        self._eval_batches: dict[tuple[str, int], list[Batch]] = {}

    @abc.abstractmethod
    def sample_problem(self, rng: random.Random) -> Hashable:
        """Draw one problem; its ``repr`` decides its split, so keep it canonical."""

    @abc.abstractmethod
    def render(self, problem: Any, rng: random.Random) -> tuple[str, list[bool]]:
        """The problem as characters, and for each whether predicting it is scored."""

    def split_of(self, problem: Hashable) -> SplitName:
        """The split that owns ``problem``, by a keyed hash of its ``repr``."""
        hasher = _keyed_hash(f"{self.name}:{self.seed}".encode()).copy()
        hasher.update(repr(problem).encode())
        digest = hasher.digest()
        u = int.from_bytes(digest, "big") / 2**64
        if u < self.valid_fraction:
            return "valid"
        if u < self.valid_fraction + self.test_fraction:
            return "test"
        return "train"

    def example(self, split: SplitName, rng: random.Random) -> tuple[str, list[bool]]:
        """One rendered problem of ``split``."""
        for _ in range(_MAX_REJECTIONS):
            problem = self.sample_problem(rng)
            if self.split_of(problem) == split:
                return self.render(problem, rng)
        raise ValueError(
            f"{self!r}: no {split} problem in {_MAX_REJECTIONS} draws; the problem space "
            "is too small for the split fractions (make the problems longer or more varied)"
        )

    def check_splits(self) -> None:
        """Raise ValueError unless every split has a problem: options such as
        ``Memorization(length=1, alphabet=2)`` leave too few problems to split, and every
        trial would spend its draws finding that out."""
        for split in ("train", "valid", "test"):
            self.example(split, random.Random(f"{self.name}:{self.seed}:check"))

    def _encoded(self, split: SplitName, rng: random.Random) -> tuple[list[int], list[bool]]:
        text, scored = self.example(split, rng)
        return self._vocabulary.encode(text), scored

    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        rng = random.Random(seed)
        while True:
            yield pad_batch([self._encoded("train", rng) for _ in range(batch_size)])

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        check_split(split)
        if split not in self._eval_sets:
            rng = random.Random(f"{self.name}:{self.seed}:{split}")
            self._eval_sets[split] = [self._encoded(split, rng) for _ in range(self.eval_size)]
        key = (split, batch_size)
        if key not in self._eval_batches:
            sequences = self._eval_sets[split]
            self._eval_batches[key] = [
                pad_batch(sequences[start : start + batch_size])
                for start in range(0, len(sequences), batch_size)
            ]
        yield from self._eval_batches[key]

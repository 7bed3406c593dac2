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
# Splits remembered per task, by the problem's repr: all of a small problem space's
# (arithmetic's "small" preset has 20,000 problems), a few MB at most.
_SPLITS_REMEMBERED = 2**15


@functools.cache
def _keyed_hash(key: bytes) -> Any:
    """An empty keyed BLAKE2b of the split hash, to copy: a copy costs a third of keying
    a new one (kept out of the task, which stays picklable)."""
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


def _teacher_forced(ids: np.ndarray, scored: np.ndarray, lengths: Sequence[int]) -> Batch:
    """The time-major batch of ``(B, W)`` rows of ids and scored flags, each row's first
    ``lengths`` entries real and the rest padded with id 0 and ``False``.

    Position ``t`` reads ``ids[:, t]`` (0 past a row's last input) and targets
    ``ids[:, t + 1]``, counted iff ``scored[:, t + 1]``.
    """
    ids, scored = ids.T, scored.T
    inputs = ids[:-1].copy()
    short = [row for row, length in enumerate(lengths) if length < len(ids)]
    if short:  # a row's last id is a target, never an input
        inputs[[lengths[row] - 1 for row in short], short] = 0
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(ids[1:].copy()),
        torch.from_numpy(scored[1:].copy()),
    )


def pad_batch(sequences: Sequence[tuple[list[int], list[bool]]]) -> Batch:
    """Teacher-forced, time-major batch of ``(ids, scored)`` sequences, padded with id 0.

    Position ``t`` reads ``ids[t]`` and targets ``ids[t + 1]``, counted iff
    ``scored[t + 1]``; padding is never counted.
    """
    for ids, scored in sequences:
        if len(scored) != len(ids):
            raise ValueError(f"a sequence of {len(ids)} ids has {len(scored)} scored flags")
    lengths = [len(ids) for ids, _ in sequences]
    width = max(lengths)
    # numpy reads nested lists about three times faster than torch.tensor does
    return _teacher_forced(
        np.array([ids + [0] * (width - len(ids)) for ids, _ in sequences], dtype=np.int64),
        np.array([s + [False] * (width - len(s)) for _, s in sequences], dtype=np.bool_),
        lengths,
    )


def _fraction_bound(fraction: float) -> bytes:
    """The big-endian 8 bytes of the least ``x`` with ``x / 2**64 >= fraction``
    (``0 < fraction < 1``): a digest is below them iff it reads as a ``u < fraction``."""
    low, high = 0, 2**64
    while low < high:
        middle = (low + high) // 2
        if middle / 2**64 >= fraction:
            high = middle
        else:
            low = middle + 1
    return low.to_bytes(8, "big")


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
        # Each character's id by its code point (-1: not a symbol; the last entry stands
        # for every code point above the table).
        self._ids = np.full(max(map(ord, symbols)) + 2, -1, dtype=np.int64)
        self._ids[[ord(c) for c in symbols]] = np.arange(len(symbols))
        self._split_key = f"{self.name}:{seed}".encode()
        self._valid_bound = _fraction_bound(valid_fraction)
        self._test_bound = _fraction_bound(valid_fraction + test_fraction)
        self._splits: dict[str, SplitName] = {}
        self._eval_sets: dict[str, list[tuple[str, list[bool]]]] = {}
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
        """The split that owns ``problem``: ``u = int.from_bytes(d, "big") / 2**64`` of the
        8-byte keyed BLAKE2b ``d`` of its ``repr`` is in ``[0, valid_fraction)`` for
        validation, in ``[valid_fraction, valid_fraction + test_fraction)`` for testing."""
        text = repr(problem)
        split = self._splits.get(text)
        if split is None:
            hasher = _keyed_hash(self._split_key).copy()
            hasher.update(text.encode())
            digest = hasher.digest()
            if digest < self._valid_bound:
                split = "valid"
            elif digest < self._test_bound:
                split = "test"
            else:
                split = "train"
            if len(self._splits) < _SPLITS_REMEMBERED:
                self._splits[text] = split
        return split

    def example(self, split: SplitName, rng: random.Random) -> tuple[str, list[bool]]:
        """One rendered problem of ``split``."""
        for _ in range(_MAX_REJECTIONS):
            problem = self.sample_problem(rng)
            if self.split_of(problem) == split:
                return self.render(problem, rng)
        raise self._no_problem(split)

    def examples(
        self, split: SplitName, rng: random.Random, count: int
    ) -> list[tuple[str, list[bool]]]:
        """``count`` rendered problems of ``split``, drawn as ``count`` calls of
        :meth:`example` draw them (subclasses may draw them in fewer steps)."""
        return [self.example(split, rng) for _ in range(count)]

    def _no_problem(self, split: SplitName) -> ValueError:
        return ValueError(
            f"{self!r}: no {split} problem in {_MAX_REJECTIONS} draws; the problem space "
            "is too small for the split fractions (make the problems longer or more varied)"
        )

    def check_splits(self) -> None:
        """Raise ValueError unless every split has a problem: options such as
        ``Memorization(length=1, alphabet=2)`` leave too few problems to split, and every
        trial would spend its draws finding that out."""
        for split in ("train", "valid", "test"):
            self.example(split, random.Random(f"{self.name}:{self.seed}:check"))

    def _batch(self, examples: Sequence[tuple[str, list[bool]]]) -> Batch:
        """:func:`pad_batch` of the encoded ``examples``, encoded and padded as whole arrays:
        per character and per sequence, that took two fifths of drawing a batch."""
        lengths = [len(text) for text, _ in examples]
        width = max(lengths)
        texts, flags = [], []
        for text, scored in examples:
            if len(scored) != len(text):
                raise ValueError(f"a text of {len(text)} characters has {len(scored)} scored flags")
            texts.append(text.ljust(width, self.vocab[0]))
            flags.append(bytes(scored) + bytes(width - len(text)))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        ids = np.take(self._ids, codes, mode="clip")
        if ids.size and ids.min() < 0:
            unknown = sorted({chr(c) for c in codes[ids < 0].tolist()})
            raise ValueError(f"{self!r} rendered characters outside its vocabulary: {unknown}")
        scored = np.frombuffer(b"".join(flags), dtype=np.bool_)
        return _teacher_forced(ids.reshape(-1, width), scored.reshape(-1, width), lengths)

    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        rng = random.Random(seed)
        while True:
            yield self._batch(self.examples("train", rng, batch_size))

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        check_split(split)
        if split not in self._eval_sets:
            rng = random.Random(f"{self.name}:{self.seed}:{split}")
            self._eval_sets[split] = self.examples(split, rng, self.eval_size)
        key = (split, batch_size)
        if key not in self._eval_batches:
            examples = self._eval_sets[split]
            self._eval_batches[key] = [
                self._batch(examples[start : start + batch_size])
                for start in range(0, len(examples), batch_size)
            ]
        yield from self._eval_batches[key]

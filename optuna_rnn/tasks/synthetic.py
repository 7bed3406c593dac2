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
import itertools
import random
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from optuna_rnn.tasks.base import Batch, Split, Task, check_split
from optuna_rnn.tasks.vocab import Vocabulary

__all__ = ["SyntheticTask", "pad_batch", "resolve_preset"]

SplitName = Literal["train", "valid", "test"]
# The most problems whose splits a task remembers (arithmetic's "small" preset has
# 20,000): a few MB at most.
_SPLITS_REMEMBERED = 2**15


@functools.cache
def _keyed_hash(key: bytes) -> Any:
    """An empty keyed BLAKE2b of the split hash, to copy: a copy costs a third of keying
    a new one (kept out of the task, which stays picklable)."""
    return hashlib.blake2b(digest_size=8, key=key)


class _Splits(dict[Hashable, SplitName]):
    """Each drawn problem's split, found by ``split_of`` the first time it is asked for.
    Drawn problems are canonical (equal problems have equal reprs), so they can key it."""

    def __init__(self, split_of: Callable[[Hashable], SplitName]) -> None:
        super().__init__()
        self.split_of = split_of

    def __missing__(self, problem: Hashable) -> SplitName:
        split = self[problem] = self.split_of(problem)
        return split


def resolve_preset(
    presets: Mapping[str, Mapping[str, Any]], preset: str, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The preset's settings with every non-``None`` override applied."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    settings = dict(presets[preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def _time_major(inputs: np.ndarray, targets: np.ndarray, scored: np.ndarray) -> Batch:
    """The batch of ``(B, T)`` rows of input ids, target ids and scored flags."""
    return Batch(
        torch.from_numpy(inputs.T.astype(np.int64, order="C")),
        torch.from_numpy(targets.T.astype(np.int64, order="C")),
        torch.from_numpy(scored.T.astype(np.bool_, order="C")),
    )


def pad_batch(sequences: Sequence[tuple[list[int], list[bool]]]) -> Batch:
    """Teacher-forced, time-major batch of ``(ids, scored)`` sequences, padded with id 0.

    Position ``t`` reads ``ids[t]`` and targets ``ids[t + 1]``, counted iff
    ``scored[t + 1]``; padding is never counted.
    """
    for ids, scored in sequences:
        if len(scored) != len(ids):
            raise ValueError(f"a sequence of {len(ids)} ids has {len(scored)} scored flags")
    steps = max(len(ids) for ids, _ in sequences) - 1

    def rows(rows: list[list[Any]], pad: object) -> np.ndarray:
        # numpy reads nested lists about three times faster than torch.tensor does
        return np.array([row + [pad] * (steps - len(row)) for row in rows])

    return _time_major(
        rows([ids[:-1] for ids, _ in sequences], 0),
        rows([ids[1:] for ids, _ in sequences], 0),
        rows([scored[1:] for _, scored in sequences], False),
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

    Subclasses implement :meth:`sample_problem` and :meth:`render`. They may give
    :meth:`problem_count`, so that the draws remember the splits of a small problem space,
    and :meth:`sample_problems`, to draw several problems at once where rendering draws
    nothing (as :class:`~optuna_rnn.tasks.Memorization` does): a seed must give the same
    examples, and leave ``rng`` in the same state, as drawing one problem at a time.

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
    #: Problems drawn in a row for one example before its split is given up as empty.
    max_rejections = 100_000

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
        if len(symbols) > 255 or max(map(ord, symbols), default=0) > 255:
            raise ValueError(f"symbols must be at most 255 Latin-1 characters, got {symbols!r}")
        self._vocabulary = Vocabulary(symbols)
        self.vocab = self._vocabulary.symbols
        self.input_size = self.output_size = len(self._vocabulary)
        self.eval_size = eval_size
        self.seed = seed
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        # Each Latin-1 byte's id (255: not a symbol), to encode a batch in one translate.
        self._ids = bytes(
            map({ord(c): i for i, c in enumerate(symbols)}.get, range(256), [255] * 256)
        )
        self._split_key = f"{self.name}:{seed}".encode()
        self._valid_bound = _fraction_bound(valid_fraction)
        self._test_bound = _fraction_bound(valid_fraction + test_fraction)
        count = self.problem_count()
        self._splits = (
            _Splits(self.split_of) if count is not None and count <= _SPLITS_REMEMBERED else None
        )
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
        hasher = _keyed_hash(self._split_key).copy()
        hasher.update(repr(problem).encode())
        digest = hasher.digest()
        if digest < self._valid_bound:
            return "valid"
        if digest < self._test_bound:
            return "test"
        return "train"

    def problem_count(self) -> int | None:
        """How many problems :meth:`sample_problem` can draw, at most (``None``: not known).
        Where there are at most 32,768 (``2**15``), the draws remember each one's split.
        Asked once, at construction: set what it reads before ``super().__init__``."""
        return None

    def example(self, split: SplitName, rng: random.Random) -> tuple[str, list[bool]]:
        """One rendered problem of ``split``."""
        return self.examples(split, rng, 1)[0]

    def examples(
        self, split: SplitName, rng: random.Random, count: int
    ) -> list[tuple[str, list[bool]]]:
        """``count`` rendered problems of ``split``: the problems of ``split`` among those
        drawn one after another (:meth:`sample_problems`), each rendered as it comes up.
        ``max_rejections`` misses in a row give the split up as empty."""
        sample, render, owner = self.sample_problems, self.render, self._owner()
        found: list[tuple[str, list[bool]]] = []
        misses = 0
        while len(found) < count:
            for problem in sample(rng, count - len(found)):
                if owner(problem) == split:
                    found.append(render(problem, rng))
                    misses = 0
                else:
                    misses += 1
                    if misses == self.max_rejections:
                        raise self._no_problem(split)
        return found

    def sample_problems(self, rng: random.Random, most: int) -> Sequence[Hashable]:
        """The next problems of the stream, at least one and at most ``most`` (each is
        rendered before the next is asked for): :meth:`sample_problem`'s one. A task
        whose :meth:`render` draws nothing may draw several at once, as long as they
        are the problems :meth:`sample_problem` would draw one after another."""
        return (self.sample_problem(rng),)

    def _owner(self) -> Callable[[Hashable], SplitName]:
        """:meth:`split_of`, remembered for each problem where there are few of them."""
        return self.split_of if self._splits is None else self._splits.__getitem__

    def _no_problem(self, split: SplitName) -> ValueError:
        """The error for a split that ``max_rejections`` draws in a row missed."""
        return ValueError(
            f"{self!r}: no {split} problem in {self.max_rejections} draws; the problem space "
            "is too small for the split fractions (make the problems longer or more varied)"
        )

    def check_splits(self) -> None:
        """Raise ValueError unless every split has a problem: options such as
        ``Memorization(length=1, alphabet=2)`` leave too few problems to split, and every
        trial would spend its draws finding that out."""
        for split in ("train", "valid", "test"):
            self.example(split, random.Random(f"{self.name}:{self.seed}:check"))

    def _batch(self, examples: Sequence[tuple[str, list[bool]]]) -> Batch:
        """:func:`pad_batch` of the encoded ``examples``, encoded and padded as whole byte
        strings: per character and per sequence, that took two fifths of drawing a batch."""
        texts = [text for text, _ in examples]
        flags = [scored for _, scored in examples]
        lengths = list(map(len, texts))
        if list(map(len, flags)) != lengths:
            text, scored = next(e for e in examples if len(e[0]) != len(e[1]))
            raise ValueError(f"a text of {len(text)} characters has {len(scored)} scored flags")
        width = max(lengths)
        pad = self.vocab[0]  # id 0
        if min(lengths) < width:
            # a row's last id is a target, never an input: its inputs are padded from there
            inputs = [text[:-1].ljust(width, pad) for text in texts]
            texts = [text.ljust(width, pad) for text in texts]
            flags = [scored + [False] * (width - len(scored)) for scored in flags]
            joined = "".join(inputs) + "".join(texts)
        else:
            joined = "".join(texts)
        try:
            ids = joined.encode("latin-1").translate(self._ids)
        except UnicodeEncodeError:
            ids = b"\xff"
        if 255 in ids:
            unknown = sorted(set(joined) - set(self.vocab))
            raise ValueError(f"{self!r} rendered characters outside its vocabulary: {unknown}")
        rows = np.frombuffer(ids + bytes(itertools.chain.from_iterable(flags)), dtype=np.uint8)
        rows = rows.reshape(-1, len(examples), width)  # [inputs,] ids, scored
        return _time_major(rows[0, :, :-1], rows[-2, :, 1:], rows[-1, :, 1:])

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

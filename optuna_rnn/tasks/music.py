"""Polyphonic music as 88-key piano rolls, modelled with independent Bernoulli outputs."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence

import torch

from optuna_rnn.tasks.base import Batch, Split, Task, check_split
from optuna_rnn.tasks.files import DataError

__all__ = ["KEYS", "LOWEST_PITCH", "MusicTask", "piano_roll"]

LOWEST_PITCH = 21  # A0, the piano's lowest key
KEYS = 88  # A0 (MIDI 21) to C8 (MIDI 108)

#: A piece: for each time step, the MIDI pitches sounding.
Piece = Sequence[Sequence[float]]


def piano_roll(piece: Piece, *, source: str) -> torch.Tensor:
    """The ``(T, 88)`` 0/1 roll of ``piece``; a pitch off the keyboard names ``source``."""
    if not isinstance(piece, (list, tuple)):
        raise DataError(
            f"{source}: a piece must be a list of time steps, not {type(piece).__name__}"
        )
    roll = torch.zeros(len(piece), KEYS)
    for t, pitches in enumerate(piece):
        if not isinstance(pitches, (list, tuple, set, frozenset)):
            raise DataError(f"{source}: step {t} must be a collection of pitches, not {pitches!r}")
        for pitch in pitches:
            if (
                not isinstance(pitch, (int, float))
                or pitch != int(pitch)
                or not (LOWEST_PITCH <= pitch < LOWEST_PITCH + KEYS)
            ):
                raise DataError(
                    f"{source}: pitch {pitch!r} at step {t} is not a piano key (21-108)"
                )
            roll[t, int(pitch) - LOWEST_PITCH] = 1.0
    return roll


def _music_batch(rolls: Sequence[torch.Tensor]) -> Batch:
    """Time-major batch predicting every step of each roll from the steps before it.

    The input at step ``t`` is the roll at ``t - 1`` (silence at ``t = 0``), so the first
    step is predicted too; steps past a piece's end are masked.
    """
    steps = max(len(roll) for roll in rolls)
    inputs = torch.zeros(steps, len(rolls), KEYS)
    targets = torch.zeros_like(inputs)
    mask = torch.zeros(steps, len(rolls), dtype=torch.bool)
    for b, roll in enumerate(rolls):
        n = len(roll)
        inputs[1:n, b] = roll[:-1]
        targets[:n, b] = roll
        mask[:n, b] = True
    return Batch(inputs, targets, mask)


class MusicTask(Task):
    """Next-step prediction of piano rolls, scored by negative log-likelihood per step.

    The NLL of a step sums the 88 keys' Bernoulli log-losses (nats); the score averages
    it over all steps of all pieces of a split (Boulanger-Lewandowski et al., 2012).
    Training draws whole pieces in a seeded shuffle, epoch after epoch; evaluation takes
    them in order.

    Args:
        pieces: ``{"train", "valid", "test"}`` to lists of pieces.
        source: names the data in error messages.
    """

    name = "music"
    input_kind = "dense"
    input_size = KEYS
    output_kind = "bernoulli"
    output_size = KEYS
    score_name = "nll"
    higher_is_better = False

    def __init__(self, pieces: Mapping[str, Sequence[Piece]], *, source: str) -> None:
        self.rolls: dict[str, list[torch.Tensor]] = {}
        for split in ("train", "valid", "test"):
            if not pieces.get(split):
                raise DataError(f"{source}: the {split!r} split is missing or empty")
            self.rolls[split] = [
                piano_roll(piece, source=f"{source} {split}[{i}]")
                for i, piece in enumerate(pieces[split])
            ]
            empty = [i for i, roll in enumerate(self.rolls[split]) if len(roll) == 0]
            if empty:
                raise DataError(f"{source}: {split} pieces {empty} have no time steps")

    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        rng = random.Random(seed)
        rolls = self.rolls["train"]
        while True:
            order = list(range(len(rolls)))
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                yield _music_batch([rolls[i] for i in order[start : start + batch_size]])

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        check_split(split)
        rolls = self.rolls[split]
        for start in range(0, len(rolls), batch_size):
            yield _music_batch(rolls[start : start + batch_size])

"""Language modelling on a user's own UTF-8 text file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import torch

from optuna_rnn.tasks.files import DataError, read_text
from optuna_rnn.tasks.stream import StreamTask, words
from optuna_rnn.tasks.vocab import Vocabulary

__all__ = ["TextFile"]

UNK = "<unk>"


class TextFile(StreamTask):
    """Next-character or next-word prediction on a text file, scored by perplexity.

    Project conventions: ``level="char"`` reads every character (newlines included);
    ``level="word"`` splits each line on whitespace and ends it with ``<eos>`` (as Penn
    Treebank). The token stream is cut in order into train, valid and test by
    ``fractions``; the vocabulary is the training tokens by descending frequency plus
    ``<unk>``, to which unseen validation and test tokens map.

    Args:
        path: the UTF-8 text file.
        level: ``"char"`` or ``"word"``.
        fractions: shares of the stream for train, valid and test (summing to 1).
        bptt: window length (truncated backpropagation through time).
    """

    name = "text"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        level: Literal["char", "word"] = "char",
        fractions: Sequence[float] = (0.9, 0.05, 0.05),
        bptt: int = 50,
    ) -> None:
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
            raise ValueError(
                f"fractions must be three positive shares summing to 1, got {fractions}"
            )
        text = read_text(path)
        tokens = list(text) if level == "char" else words(text)
        train_end = round(len(tokens) * fractions[0])
        valid_end = round(len(tokens) * (fractions[0] + fractions[1]))
        parts = {
            "train": tokens[:train_end],
            "valid": tokens[train_end:valid_end],
            "test": tokens[valid_end:],
        }
        for split, part in parts.items():
            if len(part) < 2:
                raise DataError(f"{path} is too short: its {split} split has {len(part)} tokens")
        self.path = path
        self.level = level
        vocabulary = Vocabulary.by_frequency(parts["train"], unk=UNK)
        streams = {
            split: torch.tensor(vocabulary.encode(part), dtype=torch.long)
            for split, part in parts.items()
        }
        super().__init__(vocabulary, streams, bptt=bptt)

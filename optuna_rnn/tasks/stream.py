"""Language modelling on one continuous token stream, batched as in Zaremba et al. (2014)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from optuna_rnn.tasks.base import Batch, Split, Task, check_split
from optuna_rnn.tasks.vocab import Vocabulary

__all__ = ["EOS", "StreamTask", "stream_batches", "words"]

EOS = "<eos>"


def words(text: str) -> list[str]:
    """The words of each line, each line ended by ``<eos>`` (Zaremba et al.'s reader)."""
    return [word for line in text.splitlines() for word in (*line.split(), EOS)]


def stream_batches(ids: torch.Tensor, batch_size: int, bptt: int) -> Iterator[Batch]:
    """One pass over ``ids`` cut into ``batch_size`` parallel columns and ``bptt`` windows.

    Column ``b`` holds the ``b``-th contiguous slice of the stream (the remainder of an
    uneven split is dropped); each window predicts the next token everywhere, and every
    window but the first continues the previous one (``carry_state``).
    """
    if batch_size < 1 or bptt < 1:
        raise ValueError(f"batch_size and bptt must be positive, got {batch_size}, {bptt}")
    steps = ids.numel() // batch_size
    if steps < 2:
        raise ValueError(f"a stream of {ids.numel()} tokens is too short for batch {batch_size}")
    columns = ids[: steps * batch_size].view(batch_size, steps).t()
    for start in range(0, steps - 1, bptt):
        length = min(bptt, steps - 1 - start)
        inputs = columns[start : start + length]
        targets = columns[start + 1 : start + 1 + length]
        mask = torch.ones(inputs.shape, dtype=torch.bool)
        yield Batch(inputs, targets, mask, carry_state=start > 0)


class StreamTask(Task):
    """Next-token prediction on train/valid/test token streams, scored by perplexity.

    Training repeats the train stream epoch after epoch in its fixed order (Zaremba et
    al.), so ``seed`` does not change it; the state is reset at each epoch's start.

    Args:
        vocabulary: the token ids' symbols.
        streams: ``{"train", "valid", "test"}`` to 1-D int64 token ids.
        bptt: window length (truncated backpropagation through time).
    """

    name = "stream"
    input_kind = "tokens"
    output_kind = "categorical"
    score_name = "perplexity"
    higher_is_better = False

    def __init__(
        self, vocabulary: Vocabulary, streams: Mapping[str, torch.Tensor], *, bptt: int
    ) -> None:
        missing = {"train", "valid", "test"} - set(streams)
        if missing:
            raise ValueError(f"missing streams: {sorted(missing)}")
        if bptt < 1:
            raise ValueError(f"bptt must be positive, got {bptt}")
        self._vocabulary = vocabulary
        self.vocab = vocabulary.symbols
        self.input_size = self.output_size = len(vocabulary)
        self.streams = dict(streams)
        self.bptt = bptt

    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        while True:
            yield from stream_batches(self.streams["train"], batch_size, self.bptt)

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        check_split(split)
        return stream_batches(self.streams[split], batch_size, self.bptt)

"""The task interface the trainer consumes: batches, a loss, additive metrics and a score.

A task is a data source plus a scoring rule. Subclasses set the class attributes that
describe their inputs and outputs and implement :meth:`Task.train_batches` and
:meth:`Task.eval_batches`; the loss, the metrics, the score and the evaluation loop are
shared, driven by :attr:`Task.output_kind` and :attr:`Task.score_name`.

Shapes are time-major, as in ``torch.nn.GRU``: ``(T, B)`` token ids or ``(T, B, F)``
dense features in, ``(T, B, V)`` logits out. ``Batch.mask`` marks the positions that count
for the loss *and* the score (the answer characters in arithmetic, the closing-tag
characters in XML, the real steps of a padded sequence), so training optimises exactly
what is scored.
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

__all__ = ["Batch", "Metrics", "Predict", "Split", "Task", "check_split"]

Split = Literal["valid", "test"]

#: ``predict(batch, state) -> (logits, next_state)``; ``state`` is ``None`` at the start
#: of a stream and otherwise whatever the previous call returned (opaque to the task).
Predict = Callable[["Batch", Any], tuple[torch.Tensor, Any]]


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is an evaluation split."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


@dataclass(frozen=True)
class Batch:
    """One time-major batch.

    Attributes:
        inputs: ``(T, B)`` int64 token ids, or ``(T, B, F)`` float features.
        targets: ``(T, B)`` int64 class ids, or ``(T, B, F)`` float in {0, 1} for
            Bernoulli outputs.
        mask: ``(T, B)`` bool, the positions that count for loss and score.
        carry_state: ``True`` when this batch continues the previous one (a continuous
            stream such as Penn Treebank): keep the recurrent state across batches and
            only cut the gradient (truncated BPTT). ``False``: start from a zero state.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    carry_state: bool = False


@dataclass(frozen=True)
class Metrics:
    """Additive evaluation sums; add them over batches, then :meth:`Task.score` them.

    Attributes:
        loss_sum: summed loss over the counted positions (nats; for Bernoulli outputs
            summed over the keys of each step as well).
        correct: counted positions whose argmax equals the target (accuracy tasks only:
            over a large vocabulary the argmax costs as much as the loss).
        count: number of counted positions.
    """

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(
            self.loss_sum + other.loss_sum,
            self.correct + other.correct,
            self.count + other.count,
        )

    @property
    def mean_loss(self) -> float:
        """Loss per counted position (``nan`` if nothing was counted)."""
        return self.loss_sum / self.count if self.count else math.nan


class Task(abc.ABC):
    """A recurrent-network task. Subclass it to add your own.

    Set these class (or instance) attributes and implement the two batch generators:

    Attributes:
        name: short identifier, e.g. ``"arithmetic"``.
        input_kind: ``"tokens"`` (``input_size`` is the vocabulary size) or ``"dense"``
            (``input_size`` is the feature width).
        input_size: vocabulary size or feature width.
        output_kind: ``"categorical"`` (softmax over ``output_size`` classes, cross
            entropy) or ``"bernoulli"`` (``output_size`` independent sigmoids).
        output_size: number of classes or keys.
        score_name: ``"accuracy"``, ``"perplexity"`` or ``"nll"`` (loss per counted step).
        higher_is_better: the direction of :meth:`score` (Optuna's ``maximize``).
        vocab: the symbol of each token id, for display, or ``None``.
    """

    name: str
    input_kind: Literal["tokens", "dense"]
    input_size: int
    output_kind: Literal["categorical", "bernoulli"]
    output_size: int
    score_name: Literal["accuracy", "perplexity", "nll"]
    higher_is_better: bool
    vocab: tuple[str, ...] | None = None

    @abc.abstractmethod
    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        """Endless training batches; the same ``seed`` gives the same stream."""

    @abc.abstractmethod
    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        """The finite, deterministic batches of the ``"valid"`` or ``"test"`` split."""

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The Optuna study direction for :meth:`score`."""
        return "maximize" if self.higher_is_better else "minimize"

    def _losses(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-position loss, shape ``(T, B)``."""
        if self.output_kind == "categorical":
            flat = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                batch.targets.reshape(-1),
                reduction="none",
            )
            return flat.view(batch.targets.shape)
        bce = F.binary_cross_entropy_with_logits(
            logits, batch.targets.to(logits.dtype), reduction="none"
        )
        return bce.sum(dim=-1)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean loss over the masked positions (a differentiable scalar)."""
        mask = batch.mask
        return (self._losses(logits, batch) * mask).sum() / mask.sum().clamp(min=1)

    def metrics(self, logits: torch.Tensor, batch: Batch) -> Metrics:
        """Additive sums of one batch for :meth:`score`."""
        with torch.no_grad():
            mask = batch.mask
            loss_sum = (self._losses(logits, batch) * mask).sum().item()
            if self.score_name == "accuracy":
                hits = (logits.argmax(dim=-1) == batch.targets) & mask
                correct = float(hits.sum().item())
            else:
                correct = 0.0
            return Metrics(loss_sum, correct, float(mask.sum().item()))

    def score(self, metrics: Metrics) -> float:
        """The task's score from summed metrics: accuracy, perplexity or NLL per step."""
        if self.score_name == "accuracy":
            return metrics.correct / metrics.count if metrics.count else math.nan
        if self.score_name == "perplexity":
            return math.exp(metrics.mean_loss)
        return metrics.mean_loss

    def evaluate(
        self, predict: Predict, split: Split, batch_size: int, *, max_batches: int | None = None
    ) -> dict[str, float]:
        """Run ``predict`` over a split and return ``{"loss": ..., "score": ...}``.

        ``predict(batch, state)`` returns ``(logits, next_state)``; a model whose
        ``forward`` has that signature can be passed as is. The state is carried from
        batch to batch while ``batch.carry_state`` is true, else reset to ``None``.
        Runs under ``torch.no_grad``; putting the model in eval mode is the caller's job.
        ``max_batches``: score only the split's first batches (a fixed subsample).
        """
        total = Metrics()
        state: Any = None
        with torch.no_grad():
            for batch in itertools.islice(self.eval_batches(split, batch_size), max_batches):
                logits, next_state = predict(batch, state if batch.carry_state else None)
                total = total + self.metrics(logits, batch)
                state = next_state
        return {"loss": total.mean_loss, "score": self.score(total)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

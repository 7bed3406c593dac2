"""The shared loss, metrics, score and evaluation loop of :class:`optuna_rnn.tasks.Task`."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from optuna_rnn.tasks import Batch, Metrics, Task


class _Fixed(Task):
    """Two hand-made categorical batches over a 3-symbol vocabulary."""

    name = "fixed"
    input_kind = "tokens"
    input_size = 3
    output_kind = "categorical"
    output_size = 3
    score_name = "accuracy"
    higher_is_better = True

    def __init__(self, *, carry: bool = False) -> None:
        self.carry = carry

    def train_batches(self, batch_size: int, *, seed: int) -> Iterator[Batch]:
        while True:
            yield from self.eval_batches("valid", batch_size)

    def eval_batches(self, split, batch_size: int) -> Iterator[Batch]:
        for first in (0, 1):
            inputs = torch.tensor([[first], [2]])
            targets = torch.tensor([[1], [2]])
            mask = torch.tensor([[True], [first == 1]])
            yield Batch(inputs, targets, mask, carry_state=self.carry)


def _one_hot_logits(ids: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, n).float() * 10.0


def test_loss_counts_only_masked_positions() -> None:
    task = _Fixed()
    batch = Batch(
        inputs=torch.zeros(2, 1, dtype=torch.long),
        targets=torch.tensor([[0], [1]]),
        mask=torch.tensor([[True], [False]]),
    )
    logits = torch.tensor([[[0.0, 0.0]], [[100.0, -100.0]]])
    assert task.loss(logits, batch).item() == pytest.approx(math.log(2))
    metrics = task.metrics(logits, batch)
    assert metrics.count == 1.0
    assert metrics.loss_sum == pytest.approx(math.log(2))


def test_bernoulli_loss_sums_keys_and_scores_nll() -> None:
    task = _Fixed()
    task.output_kind, task.score_name, task.higher_is_better = "bernoulli", "nll", False
    targets = torch.tensor([[[1.0, 0.0, 1.0]]])
    batch = Batch(torch.zeros(1, 1, 3), targets, torch.ones(1, 1, dtype=torch.bool))
    logits = torch.zeros(1, 1, 3)
    assert task.loss(logits, batch).item() == pytest.approx(3 * math.log(2))
    assert task.score(task.metrics(logits, batch)) == pytest.approx(3 * math.log(2))
    assert task.direction == "minimize"


def test_scores_from_additive_metrics() -> None:
    task = _Fixed()
    total = Metrics(loss_sum=2.0, correct=3.0, count=4.0) + Metrics(1.0, 1.0, 2.0)
    assert task.score(total) == pytest.approx(4 / 6)
    task.score_name = "perplexity"
    assert task.score(total) == pytest.approx(math.exp(0.5))


@pytest.mark.parametrize("carry", [False, True])
def test_evaluate_carries_state_only_for_streams(carry: bool) -> None:
    task = _Fixed(carry=carry)
    seen: list[object] = []

    def predict(batch: Batch, state: object) -> tuple[torch.Tensor, object]:
        seen.append(state)
        return _one_hot_logits(batch.targets, 3), len(seen)

    result = task.evaluate(predict, "valid", batch_size=1)
    assert seen == ([None, 1] if carry else [None, None])
    assert result["score"] == 1.0
    assert result["loss"] < 1e-3

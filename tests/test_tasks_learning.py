"""A small GRU learns Memorization, the paper's pre-filter, to 95% in seconds."""

from __future__ import annotations

from typing import Any

import torch

import optuna_rnn as orn
from optuna_rnn.tasks import Batch, Memorization, Task


class _Model(torch.nn.Module):
    """Embedding, the zoo's GRU on the reference backend, linear read-out.

    ``forward(batch, state)`` is the signature :meth:`Task.evaluate` wants.
    """

    def __init__(self, task: Task, hidden: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(task.input_size, 32)
        self.rnn = orn.CellRNN(orn.zoo.get("gru"), 32, hidden, backend="reference")
        self.out = torch.nn.Linear(hidden, task.output_size)

    def forward(self, batch: Batch, state: Any) -> tuple[torch.Tensor, Any]:
        outputs, state = self.rnn(self.embed(batch.inputs), state)
        return self.out(outputs), state


def test_gru_reaches_95_percent_on_memorization() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend
    try:
        torch.manual_seed(0)
        task = Memorization(length=4, alphabet=10, eval_size=500)
        model = _Model(task, hidden=64)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        batches = task.train_batches(32, seed=0)
        best = 0.0
        for _ in range(20):
            for _ in range(50):
                batch = next(batches)
                loss = task.loss(model(batch, None)[0], batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            best = max(best, task.evaluate(model, "valid", 250)["score"])
            if best >= 0.95:
                break
        assert best >= 0.95
        assert task.evaluate(model, "test", 250)["score"] >= 0.9
    finally:
        torch.set_num_threads(threads)

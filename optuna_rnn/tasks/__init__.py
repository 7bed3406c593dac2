"""The paper's tasks (and your own) as deterministic batches with a loss and a score.

See :class:`optuna_rnn.tasks.Task` for the interface the trainer consumes.
"""

from __future__ import annotations

from optuna_rnn.tasks.base import Batch, Metrics, Predict, Split, Task

__all__ = ["Batch", "Metrics", "Predict", "Split", "Task"]

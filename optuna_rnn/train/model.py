"""The model a trial trains: input embedding or projection, stacked cells, output layer.

The input is embedded (tokens) or projected (dense features) to the hidden width first,
as the paper does, so cells that read the raw ``x`` (MUT1, MUT2) work at every width and
every layer of the stack sees a square input. Dropout, when used, sits on the
non-recurrent connections only (Zaremba et al., 2014): after the embedding, between
layers (inside :class:`~optuna_rnn.nn.CellRNN`) and before the output layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from optuna_rnn.cell import Cell
from optuna_rnn.tasks import Batch, Task

__all__ = ["SequenceModel", "build_model"]


class SequenceModel(nn.Module):
    """Embedding/projection, a stack of :class:`~optuna_rnn.nn.CellRNN` layers, logits.

    ``forward(batch, state) -> (logits, next_state)`` matches
    :data:`optuna_rnn.tasks.Predict`, so the model can be passed to
    :meth:`Task.evaluate <optuna_rnn.tasks.Task.evaluate>` as is.
    """

    def __init__(
        self,
        cell: Cell,
        *,
        input_kind: str,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        init_scale: float = 1.0,
        backend: str = "auto",
    ) -> None:
        from optuna_rnn.nn import CellRNN

        super().__init__()
        if input_kind == "tokens":
            self.encoder: nn.Module = nn.Embedding(input_size, hidden_size)
        elif input_kind == "dense":
            self.encoder = nn.Linear(input_size, hidden_size)
        else:
            raise ValueError(f"input_kind must be 'tokens' or 'dense', got {input_kind!r}")
        self.rnn = CellRNN(
            cell,
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=False,
            dropout=dropout,
            backend=backend,
            init_scale=init_scale,
        )
        self.decoder = nn.Linear(hidden_size, output_size)
        self.drop = nn.Dropout(dropout)
        bound = init_scale / math.sqrt(hidden_size)
        for layer in (self.encoder, self.decoder):
            nn.init.uniform_(layer.weight, -bound, bound)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)

    def features(self, batch: Batch, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``(T, B, H)`` inputs of the output layer (after dropout), and the next state."""
        embedded = self.drop(self.encoder(batch.inputs))
        output, state = self.rnn(embedded, state)
        return self.drop(output), state

    def forward(self, batch: Batch, state: Any = None) -> tuple[torch.Tensor, Any]:
        hidden, state = self.features(batch, state)
        return self.decoder(hidden), state


def build_model(
    cell: Cell,
    task: Task,
    *,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    init_scale: float = 1.0,
    backend: str = "auto",
) -> SequenceModel:
    """The :class:`SequenceModel` for ``task``'s input and output sizes."""
    return SequenceModel(
        cell,
        input_kind=task.input_kind,
        input_size=task.input_size,
        output_size=task.output_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=dropout,
        init_scale=init_scale,
        backend=backend,
    )

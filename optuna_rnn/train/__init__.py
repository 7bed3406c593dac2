"""Training a cell on a task: the model, the parameter budget and the training loop."""

from __future__ import annotations

from optuna_rnn.train.budget import count_parameters, hidden_size_for_budget
from optuna_rnn.train.model import SequenceModel, build_model
from optuna_rnn.train.trainer import Diverged, TrainConfig, TrainResult, train, validate

__all__ = [
    "Diverged",
    "SequenceModel",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "count_parameters",
    "hidden_size_for_budget",
    "train",
    "validate",
]

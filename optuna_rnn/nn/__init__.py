"""Recurrent modules built from cells, and the registry of backends that run them."""

from optuna_rnn.nn.backends import LayerParams, register_backend, resolve_backend
from optuna_rnn.nn.module import CellRNN

__all__ = ["CellRNN", "LayerParams", "register_backend", "resolve_backend"]

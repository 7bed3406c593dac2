"""The cell language: IR, equations in and out, canonical hashing."""

from optuna_rnn.cell.ir import Cell, CellError, Node

__all__ = ["Cell", "CellError", "Node"]

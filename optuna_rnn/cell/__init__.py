"""The cell language: IR, equations in and out, canonical hashing."""

from optuna_rnn.cell.ir import Cell, CellError, Node
from optuna_rnn.cell.paths import Paths, live, paths

__all__ = ["Cell", "CellError", "Node", "Paths", "live", "paths"]

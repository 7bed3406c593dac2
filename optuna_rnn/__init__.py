"""optuna-rnn: search recurrent-cell architectures with Optuna."""

from optuna_rnn.cell import Cell, CellError

__all__ = ["Cell", "CellError"]
__version__ = "0.1.0"

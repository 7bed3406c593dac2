"""Search spaces over cells (no torch here: samplers and users import these cheaply)."""

from optuna_rnn.spaces.base import CellSpace
from optuna_rnn.spaces.gated import GatedSpace
from optuna_rnn.spaces.graph import GraphSpace

__all__ = ["CellSpace", "GatedSpace", "GraphSpace"]

"""OptunaHub package: the architecture search of Jozefowicz et al. (2015) as a sampler.

The implementation lives in the ``optuna-rnn`` distribution (see requirements.txt); this
package re-exports it so that ``optunahub.load_module("samplers/cell_evolution")`` gives
the same classes as ``import optuna_rnn``.
"""

from __future__ import annotations

from optuna_rnn.samplers import CellEvolutionSampler
from optuna_rnn.spaces import GraphSpace

__all__ = ["CellEvolutionSampler", "GraphSpace"]

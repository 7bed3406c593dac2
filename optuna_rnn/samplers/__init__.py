"""Optuna samplers for cell architectures (no torch here: import them into any study)."""

from __future__ import annotations

from optuna_rnn.samplers._mutation import MutationProposal, PointMutation
from optuna_rnn.samplers._population import (
    AgingPopulation,
    Architecture,
    ElitePopulation,
    Population,
)
from optuna_rnn.samplers._reevaluation import Reevaluation
from optuna_rnn.samplers._sampler import CellEvolutionSampler
from optuna_rnn.samplers._selection import TournamentSelection

__all__ = [
    "AgingPopulation",
    "Architecture",
    "CellEvolutionSampler",
    "ElitePopulation",
    "MutationProposal",
    "PointMutation",
    "Population",
    "Reevaluation",
    "TournamentSelection",
]

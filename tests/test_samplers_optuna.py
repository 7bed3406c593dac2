"""Optuna's own sampler test cases, run on CellEvolutionSampler.

They exercise the parameters the sampler does not own (everything outside the space goes
to the hyperparameter sampler), single- and multi-objective. ``RelativeSamplerTestCase``
does not apply: it calls ``sample_relative`` with an arbitrary search space, while this
sampler's relative space is the architecture it planned for the trial.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from optuna.samplers import BaseSampler
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
)

from optuna_rnn.samplers import CellEvolutionSampler
from optuna_rnn.spaces import GraphSpace


class TestCellEvolutionSampler(BasicSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: CellEvolutionSampler(space=GraphSpace(max_nodes=8), seed=0)

"""Optuna's sampler test cases on the package as OptunaHub loads it (Optuna >= 4.8).

The sampler owns only the cell space's parameters and hands every other one to its
hyperparameter sampler, so Optuna's generic float/int/categorical cases exercise that
path, single- and multi-objective; one more case runs an architecture search.
``RelativeSamplerTestCase`` does not apply: it calls ``sample_relative`` with an arbitrary
search space, while this sampler's relative space is the architecture planned for a trial.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import optunahub
import pytest

from optuna_rnn.cell import zoo

pytest_samplers = pytest.importorskip("optuna.testing.pytest_samplers")

REGISTRY_ROOT = Path(__file__).resolve().parents[3]  # the folder that holds samplers/
module = optunahub.load_local_module("samplers/cell_evolution", registry_root=str(REGISTRY_ROOT))


class TestCellEvolutionSampler(
    pytest_samplers.BasicSamplerTestCase, pytest_samplers.MultiObjectiveSamplerTestCase
):
    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: module.CellEvolutionSampler(space=module.GraphSpace(max_nodes=8), seed=0)


def test_evolves_distinct_architectures_from_enqueued_parents() -> None:
    # With no hyperparameters there is nothing to re-evaluate: every trial is a new cell.
    space = module.GraphSpace(max_nodes=24)
    study = optuna.create_study(
        sampler=module.CellEvolutionSampler(space=space, population_size=10, seed=0),
        direction="maximize",
    )
    study.enqueue_trial(space.encode(zoo.get("tanh")))
    study.optimize(lambda t: float(space.suggest(t).num_inner_nodes), n_trials=12)
    cells = [str(space.decode(t.params)) for t in study.trials]
    assert len(set(cells)) == len(cells)

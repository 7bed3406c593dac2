"""Both spaces under Optuna's samplers: real studies on SQLite, no errors, no warnings."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from collections.abc import Callable

import numpy as np
import optuna
import pytest

from optuna_rnn.cell import zoo
from optuna_rnn.spaces import CellSpace, GatedSpace, GraphSpace

SAMPLERS: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
    "tpe": lambda: optuna.samplers.TPESampler(seed=0, multivariate=True, group=True),
    # A conditional space is sampled partly by GPSampler's independent sampler by design;
    # its default logs one warning per such parameter and trial. Small startup phases and
    # populations let the model-based phases start within 30 trials.
    "gp": lambda: optuna.samplers.GPSampler(
        seed=0, n_startup_trials=5, warn_independent_sampling=False
    ),
    "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=6),
}
SPACES: dict[str, Callable[[], CellSpace]] = {
    "gated": GatedSpace,
    "graph": lambda: GraphSpace(max_nodes=16),
}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("sampler_name", sorted(SAMPLERS))
@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_thirty_trials(space_name: str, sampler_name: str) -> None:
    space = SPACES[space_name]()

    def objective(trial: optuna.Trial) -> float:
        cell = space.suggest(trial)  # never raises: every point is a valid cell
        trial.set_user_attr("fingerprint", cell.fingerprint)
        return float(cell.num_inner_nodes)

    sampler = SAMPLERS[sampler_name]()  # constructing may warn ExperimentalWarning, once
    study = optuna.create_study(sampler=sampler, direction="minimize")
    logs = _Records()
    logging.getLogger("optuna").addHandler(logs)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            study.optimize(objective, n_trials=30)
    finally:
        logging.getLogger("optuna").removeHandler(logs)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in logs.records] == []

    trials = study.get_trials()
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    choices: dict[str, optuna.distributions.BaseDistribution] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            assert choices.setdefault(name, dist) == dist, name  # fixed choices per name
        # A trial's params decode to the cell it trained.
        assert space.decode(t.params).fingerprint == t.user_attrs["fingerprint"]
        assert space.distributions(t.params) == t.distributions


@pytest.mark.parametrize("space", [GraphSpace(), GatedSpace()], ids=["graph", "gated"])
def test_random_draws_are_all_valid_cells(space: CellSpace) -> None:
    """The bar of issue 19 at a tenth of its 10,000 draws (benchmarks/space_draws.py runs
    it whole): every RandomSampler draw suggests a valid, learnable cell that decodes back."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=19))
    for _ in range(1000):
        trial = study.ask()
        cell = space.suggest(trial)
        assert cell.learnable  # CellRNN refuses a cell with no weight and no bias
        assert space.decode(trial.params) == cell
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_enqueued_zoo_cells_come_back_from_sqlite(space_name: str, tmp_path) -> None:
    space = SPACES[space_name]()
    names = ["lstm", "gru", "mut1"] if space_name == "gated" else ["ugrnn", "tanh", "indrnn"]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'spaces.db'}")
    for name in names:
        study.enqueue_trial(space.encode(zoo.get(name)))
    study.optimize(lambda trial: float(space.suggest(trial).num_inner_nodes), n_trials=3)
    stored = optuna.load_study(study_name=study.study_name, storage=study._storage)
    for name, trial in zip(names, stored.get_trials()):
        assert space.decode(trial.params) == zoo.get(name)
        assert space.distributions(trial.params) == trial.distributions


def test_spaces_do_not_import_torch() -> None:
    code = (
        "import sys, optuna\n"
        "from optuna_rnn import GatedSpace, GraphSpace\n"
        "from optuna.trial import FixedTrial\n"
        "from optuna_rnn.cell import zoo\n"
        "for space in (GatedSpace(), GraphSpace()):\n"
        "    lstm = zoo.get('lstm')\n"
        "    assert space.suggest(FixedTrial(space.encode(lstm))) == lstm\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("space", [GraphSpace(max_nodes=24), GatedSpace()], ids=["graph", "gated"])
def test_sample_draws_points_from_the_generator_alone(space: CellSpace) -> None:
    draws = [space.sample(np.random.default_rng(k)) for k in range(200)]
    for cell, params in draws:
        assert cell.learnable and space.decode(params) == cell
        study = optuna.create_study()
        study.enqueue_trial(params)  # a sampler can hand the params to Optuna as they are
        assert space.suggest(study.ask()) == cell
    assert space.sample(np.random.default_rng(7))[1] == draws[7][1]
    assert len({cell.fingerprint for cell, _ in draws}) > 100

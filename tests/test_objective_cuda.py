"""A real study whose trials train on a CUDA GPU; skipped without one."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch
from _helpers import SMALL
from optuna.trial import TrialState

from optuna_rnn import make_objective
from optuna_rnn.kernels import graphs
from optuna_rnn.tasks.memorization import Memorization

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_a_study_on_cuda_trains_its_cells_through_cuda_graphs(tmp_path):
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'rnn.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    hyperparameters = dataclasses.replace(SMALL, layer_counts=(1, 2))
    objective = make_objective(
        Memorization(length=3, alphabet=6, eval_size=60),
        hyperparameters=hyperparameters,
        max_steps=40,
        eval_every=20,
        notes=False,
        device="cuda",
    )
    study.optimize(objective, n_trials=4)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 3 and all(
        t.state != TrialState.FAIL for t in study.trials
    )  # a diverging cell is pruned
    assert all(0 <= t.value <= 1 and math.isfinite(t.value) for t in complete)
    assert any(owner._entries[key].graph is not None for (_, key), owner in graphs._kept.items())

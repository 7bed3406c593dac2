"""Evolve cells with the OptunaHub package on a cheap stand-in objective (no training).

A real search trains each cell: replace ``objective`` with
``optuna_rnn.make_objective(optuna_rnn.tasks.Memorization(), space=space)``.
"""

from __future__ import annotations

import optuna
import optunahub

from optuna_rnn.cell import CellError, zoo

module = optunahub.load_module("samplers/cell_evolution")
space = module.GraphSpace(max_nodes=24)


def objective(trial: optuna.Trial) -> float:
    try:
        cell = space.suggest(trial)
    except CellError:
        raise optuna.TrialPruned() from None
    learning_rate = trial.suggest_categorical("learning_rate", [0.1, 0.5, 1.0])
    return -abs(cell.num_inner_nodes - 16) + learning_rate  # prefers cells of 16 nodes


if __name__ == "__main__":
    sampler = module.CellEvolutionSampler(space=space, population_size=20, seed=0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for name in ("tanh", "gru"):  # the paper started from LSTM and GRU
        study.enqueue_trial(space.encode(zoo.get(name)))
    study.optimize(objective, n_trials=50)
    print(f"best value {study.best_value:.2f}, cell:\n{space.decode(study.best_params)}")

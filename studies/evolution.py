"""The paper's evolutionary search with the min-over-tasks score.

CellEvolutionSampler over GraphSpace, started from LSTM and GRU; each cell must pass the
memorisation pre-filter (95%), then is scored on every task, and its score is the minimum
over tasks of its score there relative to the GRU's best in the same study
(make_multitask_objective, which also cuts cells below 90% of the GRU on the first task).
The leaderboard shows which architectures beat the GRU everywhere (score above 1).

The median pruner stays on here: it ranks mutants against the search so far, and a
pruned mutant is a cell the search declines to spend on, as the paper's 90% cut is. The
baseline studies (table2, forget_bias, gates) run unpruned, because their best of N must
not depend on which draws a pruner stopped.

Presets:
  cpu    arithmetic:small and xml:small with Adam, 75 trials of at most 3 x 45 s of
         training (pre-filter and two tasks) plus 50 s of final validations, tests and the
         new cell's kernel build: bound 75 x 185 s / 2 workers = 116 min on a 2-core
         machine (pruned cells take less).
  paper  the paper's protocol: SGD over its choice lists, its task presets and PTB, 2,000
         trials, 20,000 steps per task.

Run: python studies/evolution.py --preset cpu   (storage and results in studies/runs/)
"""

from __future__ import annotations

from _common import Context, main

from optuna_rnn.cli.spec import SearchSpec
from optuna_rnn.hyperparameters import ADAM_LEARNING_RATES

PRESETS = {
    "cpu": {
        "tasks": ("arithmetic:small", "xml:small"),
        "n_trials": 75,
        "objective": {
            "optimizer": "adam",
            "max_steps": 1000,
            "max_seconds": 45,
            "eval_every": 250,
            "valid_batches": 10,
            "hyperparameters": {"learning_rates": list(ADAM_LEARNING_RATES)},
        },
    },
    "paper": {
        "tasks": ("arithmetic:paper", "xml:paper", "ptb"),
        "n_trials": 2000,
        "objective": {"optimizer": "sgd", "max_steps": 20000, "eval_every": 1000},
    },
}


def run(preset: dict, context: Context) -> None:
    spec = SearchSpec(
        tasks=preset["tasks"],
        sampler="evolution",
        n_trials=preset["n_trials"],
        seed=0,
        objective=preset["objective"],
    )
    context.search("search", spec)


if __name__ == "__main__":
    main("evolution", __doc__, PRESETS, run)

"""The paper's evolutionary search with the min-over-tasks score.

CellEvolutionSampler over GraphSpace, started from LSTM and GRU; each cell must pass the
memorisation pre-filter (95%), then is scored on every task, and its score is the minimum
over tasks of its score there relative to the GRU's best in the same study
(make_multitask_objective, which also cuts cells below 90% of the GRU on the first task).
The leaderboard shows which architectures beat the GRU everywhere (score above 1).

Presets (the cpu one trains with Adam, the paper's with SGD, so that cells learn within
its short budgets):
  cpu    arithmetic:small and xml:small, 40 trials of at most 3 x 45 s of training
         (pre-filter and two tasks): at most about 45 minutes with 2 workers on a 2-core
         machine (a bound from the budgets, not a timing; pruned cells take less).
  paper  the paper's task presets and PTB, 2,000 trials, 20,000 steps per task.

Run: python studies/evolution.py --preset cpu   (writes results/evolution/cpu/)
"""

from __future__ import annotations

from _common import Context, main

from optuna_rnn.cli.spec import SearchSpec

PRESETS = {
    "cpu": {
        "tasks": ("arithmetic:small", "xml:small"),
        "n_trials": 40,
        "objective": {"optimizer": "adam", "max_steps": 1000, "max_seconds": 45, "eval_every": 250},
    },
    "paper": {
        "tasks": ("arithmetic:paper", "xml:paper", "ptb"),
        "n_trials": 2000,
        "objective": {"max_steps": 20000, "eval_every": 1000},
    },
}


def run(preset: dict, context: Context) -> None:
    spec = SearchSpec(tasks=preset["tasks"], sampler="evolution", n_trials=preset["n_trials"],
                      seed=0, objective=preset["objective"])
    context.search("search", spec)


if __name__ == "__main__":
    main("evolution", __doc__, PRESETS, run)

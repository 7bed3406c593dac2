"""JSB Chorales evaluation: the paper's cells on Bach chorales (music21's corpus), scored
by negative log-likelihood per time step (lower is better), as the paper's music
evaluation did (no search, random hyperparameter draws per cell).

Presets (the cpu one trains with Adam, the paper's with SGD, so that cells learn within
its short budgets):
  cpu    6 cells x 4 draws = 24 trials of at most 60 s of training: at most about 15
         minutes with 2 workers on a 2-core machine (a bound from the budgets, not a
         timing), plus about 70 s to parse the chorales the first time.
  paper  the paper's ten cells, 20 draws, 10,000 steps per trial.

Run: python studies/jsb.py --preset cpu   (writes results/jsb/cpu/)
"""

from __future__ import annotations

from _common import Context, baselines, main

from optuna_rnn.cli.search import PAPER_CELLS
from optuna_rnn.export import best_by_cell

PRESETS = {
    "cpu": {
        "cells": ("tanh", "lstm", "lstm_b", "gru", "mut1", "mut3"),
        "draws": 4,
        "objective": {
            "optimizer": "adam",
            "max_steps": 1000,
            "max_seconds": 60,
            "eval_every": 200,
            "valid_batches": 10,
        },
    },
    "paper": {
        "cells": PAPER_CELLS,
        "draws": 20,
        "objective": {"max_steps": 10000, "eval_every": 500},
    },
}


def run(preset: dict, context: Context) -> None:
    study = context.search(
        "jsb",
        baselines(preset["cells"], preset["draws"], tasks=("jsb",), objective=preset["objective"]),
    )
    context.table("jsb", best_by_cell({"jsb_nll": study}))


if __name__ == "__main__":
    main("jsb", __doc__, PRESETS, run)

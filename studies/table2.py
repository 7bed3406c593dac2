"""The paper's Table 2: each cell's best score on Arithmetic, XML and Penn Treebank.

Every cell of the table gets the same number of random hyperparameter draws per task (the
paper's baselines); the table gives each cell's best validation score per task, its ratio
to the GRU's, and the paper's numbers beside ours. Perplexity is lower-is-better, so its
ratio is GRU / cell: above 1 means better than the GRU on every column.

Presets (the cpu one trains with Adam, the paper's with SGD, so that cells learn within
its short budgets):
  cpu    arithmetic:small, xml:small, PTB; 10 cells x 2 draws x 3 tasks = 60 trials of at
         most 60 s of training each: at most about 40 minutes with 2 workers on a 2-core
         machine (a bound from the budgets, not a timing).
  paper  the paper's task presets, 20 draws per cell and task, 20,000 steps per trial.

Run: python studies/table2.py --preset cpu   (writes results/table2/cpu/)
"""

from __future__ import annotations

import pandas as pd
from _common import Context, baselines, main

from optuna_rnn.cli.search import PAPER_CELLS
from optuna_rnn.export import best_by_cell

#: Table 2 of Jozefowicz, Zaremba and Sutskever (ICML 2015), as recalled: best accuracy per cell.
PAPER = pd.DataFrame(
    {
        "cell": list(PAPER_CELLS),
        "paper_arithmetic": [0.29, 0.89, 0.29, 0.75, 0.87, 0.90, 0.90, 0.92, 0.90, 0.91],
        "paper_xml": [0.32, 0.42, 0.23, 0.41, 0.42, 0.44, 0.46, 0.47, 0.47, 0.46],
    }
)
PRESETS = {
    "cpu": {
        "tasks": {"arithmetic": "arithmetic:small", "xml": "xml:small", "ptb": "ptb"},
        "cells": PAPER_CELLS,
        "draws": 2,
        "objective": {"optimizer": "adam", "max_steps": 1500, "max_seconds": 60, "eval_every": 250},
        # PTB's 10k-word embedding and output layer alone hold about 30k parameters at width 1.
        "task_objective": {"ptb": {"hyperparameters": {"param_budgets": [200_000, 500_000]}}},
    },
    "paper": {
        "tasks": {"arithmetic": "arithmetic:paper", "xml": "xml:paper", "ptb": "ptb"},
        "cells": PAPER_CELLS,
        "draws": 20,
        "objective": {"max_steps": 20000, "eval_every": 1000,
                      "hyperparameters": {"param_budgets": [1_000_000, 5_000_000, 20_000_000]}},
    },
}


def run(preset: dict, context: Context) -> None:
    studies = {
        label: context.search(
            label,
            baselines(preset["cells"], preset["draws"], tasks=(task,),
                      objective={**preset["objective"], **preset.get("task_objective", {}).get(label, {})}),
        )
        for label, task in preset["tasks"].items()
    }
    table = best_by_cell(studies)
    gru = table.set_index("cell").loc["gru"]
    for label, study in studies.items():
        maximize = study.direction.name == "MAXIMIZE"
        ratio = table[label] / gru[label] if maximize else gru[label] / table[label]
        table[f"{label}/gru"] = ratio
    context.table("table2", table.merge(PAPER, on="cell", how="left"))


if __name__ == "__main__":
    main("table2", __doc__, PRESETS, run)

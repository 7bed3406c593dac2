"""The forget-bias finding: an LSTM whose forget gate bias starts at 1 (LSTM-b) closes
most of the gap between the LSTM and the GRU.

LSTM, LSTM-b and GRU get the same random hyperparameter draws budget on Arithmetic and
XML; the table gives each cell's best and median validation accuracy per task. The
finding holds when lstm_b is above lstm and near gru in the best column.

Presets (the cpu one trains with Adam, the paper's with SGD, so that cells learn within
its short budgets):
  cpu    arithmetic:small and xml:small, 3 cells x 4 draws x 2 tasks = 24 trials of at most
         45 s of training: 615 s (10.3 min) with 2 workers on the project's 2-core machine,
         measured 2026-11-26 while other jobs shared it (see README, Reproduced results).
  paper  the paper's task presets, 20 draws, 20,000 steps per trial.

Run: python studies/forget_bias.py --preset cpu   (writes results/forget_bias/cpu/)
"""

from __future__ import annotations

import optuna
import pandas as pd
from _common import Context, baselines, main

from optuna_rnn import leaderboard

CELLS = ("lstm", "lstm_b", "gru")
PRESETS = {
    "cpu": {
        "tasks": {"arithmetic": "arithmetic:small", "xml": "xml:small"},
        "draws": 4,
        "objective": {"optimizer": "adam", "max_steps": 1500, "max_seconds": 45, "eval_every": 250},
    },
    "paper": {
        "tasks": {"arithmetic": "arithmetic:paper", "xml": "xml:paper"},
        "draws": 20,
        "objective": {"max_steps": 20000, "eval_every": 1000},
    },
}


def _summary(label: str, study: optuna.Study) -> pd.DataFrame:
    board = leaderboard(study).set_index("zoo_name")
    return pd.DataFrame(
        {f"{label}_best": board["best_score"], f"{label}_median": board["median_score"]}
    )


def run(preset: dict, context: Context) -> None:
    parts = [
        _summary(label, context.search(label, baselines(CELLS, preset["draws"], tasks=(task,),
                                                        objective=preset["objective"])))
        for label, task in preset["tasks"].items()
    ]
    table = pd.concat(parts, axis=1).reindex(list(CELLS)).rename_axis("cell").reset_index()
    context.table("forget_bias", table)


if __name__ == "__main__":
    main("forget_bias", __doc__, PRESETS, run)

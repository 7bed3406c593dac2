"""The forget-bias finding: an LSTM whose forget gate bias starts at 1 (LSTM-b) closes
most of the gap between the LSTM and the GRU.

LSTM, LSTM-b and GRU get the same N hyperparameter draws (paired) on Arithmetic and XML,
one study per task; the table gives each cell's best and median validation accuracy per
task, and the findings their bootstrap intervals and the probabilities of "LSTM-b above
LSTM", "LSTM-b near GRU" and "GRU above LSTM".

Presets:
  cpu    arithmetic:small and xml:small, 3 cells x 20 draws = 60 unpruned trials per task
         of at most 60 s of Adam: bound 60 x (60 s + 15 s) / 2 workers = 38 min per task,
         75 min for both.
  paper  the paper's task presets and SGD choice lists, 20 draws, 20,000 steps per trial.

Run: python studies/forget_bias.py --preset cpu   (storage and results in studies/runs/)
"""

from __future__ import annotations

import optuna
import pandas as pd
from _common import SYNTHETIC_PRESETS, Context, baselines, main

from optuna_rnn import leaderboard

CELLS = ("lstm", "lstm_b", "gru")
PRESETS = SYNTHETIC_PRESETS


def _summary(label: str, study: optuna.Study) -> pd.DataFrame:
    board = leaderboard(study).set_index("zoo_name")
    return pd.DataFrame(
        {f"{label}_best": board["best_score"], f"{label}_median": board["median_score"]}
    )


def run(preset: dict, context: Context) -> None:
    studies = {
        label: context.search(
            label, baselines(CELLS, preset["draws"], tasks=(task,), objective=preset["objective"])
        )
        for label, task in preset["tasks"].items()
    }
    parts = [_summary(label, study) for label, study in studies.items()]
    table = pd.concat(parts, axis=1).reindex(list(CELLS)).rename_axis("cell").reset_index()
    context.table("forget_bias", table)
    context.findings(studies)


if __name__ == "__main__":
    main("forget_bias", __doc__, PRESETS, run)

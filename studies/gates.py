"""Gate importance: the LSTM without each of its gates (LSTM-f, LSTM-i, LSTM-o).

The paper found the forget gate matters most (outside language modelling), then the
input gate, and the output gate least: LSTM-f far below the LSTM, LSTM-i below it, LSTM-o
close to it. The four cells get the same N hyperparameter draws (paired) on Arithmetic
and XML, one study per task; the findings give each cell's best and median with
bootstrap intervals and the probability of each of the three orderings.

Presets:
  cpu    arithmetic:small and xml:small, 4 cells x 20 draws = 80 unpruned trials per task
         of at most 60 s of Adam: bound 80 x (60 s + 15 s) / 2 workers = 50 min per task,
         100 min for both.
  paper  the paper's task presets and SGD choice lists, 20 draws, 20,000 steps per trial.

Run: python studies/gates.py --preset cpu   (storage and results in studies/runs/)
"""

from __future__ import annotations

from _common import SYNTHETIC_PRESETS, Context, baselines, main

from optuna_rnn.export import best_by_cell

CELLS = ("lstm", "lstm_f", "lstm_i", "lstm_o")
PRESETS = SYNTHETIC_PRESETS


def run(preset: dict, context: Context) -> None:
    studies = {
        label: context.search(
            label, baselines(CELLS, preset["draws"], tasks=(task,), objective=preset["objective"])
        )
        for label, task in preset["tasks"].items()
    }
    context.table("gates", best_by_cell(studies))
    context.findings(studies)


if __name__ == "__main__":
    main("gates", __doc__, PRESETS, run)

"""Penn Treebank with dropout: the paper found the LSTM (with forget bias) best there.

Cells train with dropout on the non-recurrent connections (Zaremba et al., 2014), drawn
from the paper's {0, 0.1, 0.3, 0.5}, at the preset's parameter budgets; the table gives
each cell's best validation perplexity (lower is better).

Presets (the cpu one trains with Adam, the paper's with SGD, so that cells learn within
its short budgets):
  cpu    5 cells x 4 draws = 20 trials of at most 120 s of training at 0.2M-1M
         parameters: at most about 25 minutes with 2 workers on a 2-core machine (a bound
         from the budgets, not a timing).
  paper  5M, 10M and 20M parameters, 20 draws, 40,000 steps per trial (a GPU's work).

Run: python studies/ptb_dropout.py --preset cpu   (writes results/ptb_dropout/cpu/)
"""

from __future__ import annotations

from _common import Context, baselines, main

from optuna_rnn.export import best_by_cell
from optuna_rnn.hyperparameters import ADAM_LEARNING_RATES, PAPER_DROPOUTS

CELLS = ("lstm", "lstm_b", "gru", "mut1", "mut3")
PRESETS = {
    "cpu": {
        "draws": 4,
        "objective": {
            "optimizer": "adam",
            "max_steps": 2000,
            "max_seconds": 120,
            "eval_every": 400,
            "valid_batches": 10,
            "hyperparameters": {
                "learning_rates": list(ADAM_LEARNING_RATES),
                "param_budgets": [200_000, 1_000_000],
                "dropouts": list(PAPER_DROPOUTS),
            },
        },
    },
    "paper": {
        "draws": 20,
        "objective": {
            "max_steps": 40000,
            "eval_every": 2000,
            "hyperparameters": {
                "param_budgets": [5_000_000, 10_000_000, 20_000_000],
                "dropouts": list(PAPER_DROPOUTS),
            },
        },
    },
}


def run(preset: dict, context: Context) -> None:
    study = context.search(
        "ptb", baselines(CELLS, preset["draws"], tasks=("ptb",), objective=preset["objective"])
    )
    context.table("ptb_dropout", best_by_cell({"ptb_perplexity": study}))


if __name__ == "__main__":
    main("ptb_dropout", __doc__, PRESETS, run)

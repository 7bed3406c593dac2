"""The paper's Table 2: each cell's best score on Arithmetic, XML and Penn Treebank.

Every cell gets the same N hyperparameter draws per task (a paired design, the paper's
baselines), one study per task; the table gives each cell's best validation score per
task, its ratio to the GRU's and the paper's numbers beside ours (perplexity is lower is
better, so its ratio is GRU / cell: above 1 means better than the GRU). The findings add
bootstrap intervals and each ordering's probability (docs/guides/reproduction.md).

Presets:
  cpu    arithmetic:small, xml:small, PTB; 10 cells x 10 draws = 100 unpruned trials per
         task, trained with Adam. Bound per study (2 workers on 2 cores): arithmetic and
         XML 100 x (60 s + 15 s final validation, test and kernel builds) / 2 = 63 min
         each; PTB 100 x (100 s + 25 s) / 2 = 104 min. All three: at most 3 h 50 min; run
         one with --only arithmetic|xml|ptb.
  paper  the paper's protocol: SGD over its choice lists (learning rate 0.1-5, init
         scale 0.3-2.8, clipping 1-20, 1-4 layers), budgets up to 20M parameters, the
         paper's task presets, 20 draws per cell and task, 20,000 steps per trial.

Run: python studies/table2.py --preset cpu   (storage and results in studies/runs/)
"""

from __future__ import annotations

import pandas as pd
from _common import CPU_OBJECTIVE, Context, baselines, main

from optuna_rnn.cli.search import PAPER_CELLS
from optuna_rnn.export import best_by_cell
from optuna_rnn.findings import PAPER_BEST

PAPER = pd.DataFrame(
    {
        "cell": list(PAPER_CELLS),
        **{f"paper_{task}": [best[c] for c in PAPER_CELLS] for task, best in PAPER_BEST.items()},
    }
)
#: PTB on a CPU (measured with studies/ptb_check.py, see docs/guides/reproduction.md):
#: one layer at 1M parameters (width 49 for the LSTM: the 10k-word embedding and output
#: layer hold most of it), 700 steps (about 90 CPU seconds), capped at 100 s.
PTB_CPU = {
    "max_steps": 700,
    "max_seconds": 100,
    "eval_every": 350,
    "valid_batches": 10,
    "hyperparameters": {
        "learning_rates": [0.003, 0.005, 0.01],
        "param_budgets": [1_000_000],
        "layer_counts": [1],
        "init_scales": [0.3, 0.7, 1.0, 1.4],
        "max_grad_norms": [1.0, 2.5, 5.0, 10.0],
    },
}
PRESETS = {
    "cpu": {
        "tasks": {"arithmetic": "arithmetic:small", "xml": "xml:small", "ptb": "ptb"},
        "cells": PAPER_CELLS,
        "draws": 10,
        "objective": CPU_OBJECTIVE,
        "task_objective": {"ptb": PTB_CPU},
    },
    "paper": {
        "tasks": {"arithmetic": "arithmetic:paper", "xml": "xml:paper", "ptb": "ptb"},
        "cells": PAPER_CELLS,
        "draws": 20,
        "objective": {
            "optimizer": "sgd",
            "max_steps": 20000,
            "eval_every": 1000,
            "hyperparameters": {"param_budgets": [1_000_000, 5_000_000, 20_000_000]},
        },
    },
}


def run(preset: dict, context: Context) -> None:
    per_task = preset.get("task_objective", {})
    studies = {
        label: context.search(
            label,
            baselines(
                preset["cells"],
                preset["draws"],
                tasks=(task,),
                objective={**preset["objective"], **per_task.get(label, {})},
            ),
        )
        for label, task in preset["tasks"].items()
    }
    table = best_by_cell(studies)
    if "gru" in set(table["cell"]):
        gru = table.set_index("cell").loc["gru"]
        for label, study in studies.items():
            ratio = table[label] / gru[label]
            table[f"{label}/gru"] = ratio if study.direction.name == "MAXIMIZE" else 1 / ratio
    context.table("table2", table.merge(PAPER, on="cell", how="left"))
    context.findings(studies)


if __name__ == "__main__":
    main("table2", __doc__, PRESETS, run)

"""What keeping a trial's model costs: upload_model beside one validation pass, same model.

A 50k-parameter LSTM on the default memorisation task (the objective's largest default
parameter budget); each repeat uploads to a FileSystemArtifactStore on a SQLite study.

    python benchmarks/model_artifact.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import optuna
from optuna.artifacts import FileSystemArtifactStore

from optuna_rnn.cell import zoo
from optuna_rnn.models import ModelCard, upload_model
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.train import build_model, hidden_size_for_budget, validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task, cell = Memorization(), zoo.get("lstm")
    width = hidden_size_for_budget(
        cell,
        50_000,
        input_size=task.input_size,
        output_size=task.output_size,
        input_kind=task.input_kind,
    )
    model = build_model(cell, task, hidden_size=width)
    card = ModelCard.of(model, task, hyperparameters={}, batch_size=20)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as root:
        store = FileSystemArtifactStore(root)
        study = optuna.create_study(storage=f"sqlite:///{root}/s.db", direction="maximize")
        for repeat in range(args.repeats):
            trial = study.ask()
            tick = time.perf_counter()
            upload_model(trial, model, card, store)
            upload = time.perf_counter() - tick
            tick = time.perf_counter()
            validate(model, task, "valid", 20)
            valid = time.perf_counter() - tick
            study.tell(trial, 0.0)
            print(
                f"repeat {repeat}: {params} parameters; upload_model {upload * 1e3:.1f} ms, "
                f"one validation pass (baseline) {valid * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()

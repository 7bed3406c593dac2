"""What every study script shares: presets, runs that resume, and where results live.

A study script declares its presets (``cpu``, sized for a 2-core machine, and ``paper``,
the paper's protocol for real hardware) and a ``run(preset, context)``; :func:`main`
parses ``--preset``, ``--only``, ``--storage``, ``--workers`` and ``--out``. By default
a study keeps both its storage and its results in the repository, under ``studies/runs/``:

- ``<name>-<preset>.sqlite3``: the Optuna storage. Stop a run at any point (Ctrl-C, a
  reboot) and the same command continues it: finished trials stay, waiting draws are run,
  and a trial whose worker died is failed once its heartbeat is stale and run again with
  the same draw. (The extension keeps it out of ``.gitignore``'s ``*.db``.)
- ``<name>-<preset>/``: each study's leaderboard, trials and plots, the script's tables,
  and the findings (:mod:`optuna_rnn.findings`): per cell and task the best of N and the
  median with bootstrap intervals, each ordering's probability, and a plot per task.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from optuna_rnn.cli.search import prepare_study, run_search
from optuna_rnn.cli.spec import SearchSpec, parse_assignment
from optuna_rnn.export import export_study, write_table
from optuna_rnn.findings import export_findings
from optuna_rnn.hyperparameters import ADAM_LEARNING_RATES
from optuna_rnn.storage import open_storage

#: Where the studies' storages and results are kept (committed with the repository).
RUNS = Path(__file__).resolve().parent / "runs"
#: The cpu presets' training of one draw on a synthetic task (table2, forget_bias, gates):
#: Adam for at most 1,500 steps or 60 s, validating on 10 batches every 250 steps.
CPU_OBJECTIVE = {
    "optimizer": "adam",
    "max_steps": 1500,
    "max_seconds": 60,
    "eval_every": 250,
    "valid_batches": 10,
    "hyperparameters": {"learning_rates": list(ADAM_LEARNING_RATES)},
}
#: The presets of the studies that compare a few cells on arithmetic and XML, 20 paired
#: draws each (forget_bias, gates).
SYNTHETIC_PRESETS = {
    "cpu": {
        "tasks": {"arithmetic": "arithmetic:small", "xml": "xml:small"},
        "draws": 20,
        "objective": CPU_OBJECTIVE,
    },
    "paper": {
        "tasks": {"arithmetic": "arithmetic:paper", "xml": "xml:paper"},
        "draws": 20,
        "objective": {"optimizer": "sgd", "max_steps": 20000, "eval_every": 1000},
    },
}


@dataclasses.dataclass(frozen=True)
class Context:
    """Where and how a study script runs its searches.

    ``only``: the labels to run; any other label's study is opened (created with its
    seeded draws if new) but not run, so tables and findings cover what exists.
    """

    name: str
    storage: str
    workers: int
    out: Path
    only: frozenset[str] | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    timeout: float | None = None

    def search(self, label: str, spec: SearchSpec) -> optuna.Study:
        """Run (or resume) ``spec`` as study ``<name>-<label>``; export it to ``out/label``.

        ``overrides`` replace objective options (a quick check of a preset end to end);
        ``timeout`` stops starting trials after that many seconds (the study resumes later).
        """
        study_name = f"{self.name}-{label}"
        if self.overrides:
            spec = dataclasses.replace(spec, objective={**spec.objective, **self.overrides})
        if self.only is None or label in self.only:
            study = run_search(
                spec,
                storage=self.storage,
                study_name=study_name,
                workers=self.workers,
                timeout=self.timeout,
            )
        else:
            study = prepare_study(open_storage(self.storage), study_name, spec)
        export_study(study, self.out / label)
        return study

    def table(self, stem: str, frame: Any) -> None:
        """Write ``out/stem.csv`` and ``out/stem.md`` and print the markdown."""
        for path in write_table(frame, self.out, stem):
            if path.suffix == ".md":
                print(f"\n{stem}:\n{path.read_text()}")

    def findings(self, studies: Mapping[str, optuna.Study]) -> None:
        """Findings of studies keyed by task: tables (printed) and a plot per task."""
        for path in export_findings(studies, self.out):
            if path.suffix == ".md":
                print(f"\n{path.stem}:\n{path.read_text()}")


def baselines(cells: Sequence[str], draws: int, **fields: Any) -> SearchSpec:
    """Zoo cells with the same ``draws`` hyperparameter draws each, as ``optuna-rnn baselines``.

    Unpruned: every draw trains to its budget, as the paper's did, so that best and median
    compare cells on equal terms (a pruner stops a slow starter that might have become a
    cell's best, and stops more of the slow-learning cells: best-of-N would be biased).
    """
    return SearchSpec(
        sampler="random",
        pruner="none",
        n_trials=len(cells) * draws,
        seed_cells=tuple(cells),
        seed_draws=draws,
        **fields,
    )


def main(
    name: str,
    doc: str,
    presets: Mapping[str, Mapping[str, Any]],
    run: Callable[[Mapping[str, Any], Context], None],
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument(
        "--only",
        action="append",
        metavar="LABEL",
        help="run only this study of the script (e.g. a task: ptb); the "
        "others are read as they are (repeatable)",
    )
    parser.add_argument("--storage", help="default: sqlite:///studies/runs/NAME-PRESET.sqlite3")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default: studies/runs/NAME-PRESET/")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an objective option of every study, e.g. max_steps=20 "
        "(a quick end-to-end check; use another --storage)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop starting trials after this long; run again to resume",
    )
    args = parser.parse_args(argv)
    stem = f"{name}-{args.preset}"
    out = args.out if args.out is not None else RUNS / stem
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{RUNS / stem}.sqlite3"
    only = frozenset(args.only) if args.only else None
    overrides = dict(parse_assignment(text) for text in args.set)
    context = Context(stem, storage, args.workers, out, only, overrides, args.timeout)
    run(presets[args.preset], context)

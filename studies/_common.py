"""What every study script shares: presets on the command line, runs, and the results folder.

A study script declares its presets (a CPU one sized for a 2-core machine and the
paper's scale) and a ``run(preset, context)``; :func:`main` parses ``--preset``,
``--storage``, ``--workers`` and ``--out`` and writes ``results/<study>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from optuna_rnn.cli.search import run_search
from optuna_rnn.cli.spec import SearchSpec
from optuna_rnn.export import export_study, write_table


@dataclasses.dataclass(frozen=True)
class Context:
    """Where and how a study script runs its searches."""

    name: str
    storage: str
    workers: int
    out: Path

    def search(self, label: str, spec: SearchSpec) -> optuna.Study:
        """Run (or resume) ``spec`` as study ``<name>-<label>``; export it to ``out/label``."""
        study = run_search(spec, storage=self.storage, study_name=f"{self.name}-{label}",
                           workers=self.workers)
        export_study(study, self.out / label)
        return study

    def table(self, stem: str, frame: Any) -> None:
        """Write ``out/stem.csv`` and ``out/stem.md`` and print the markdown."""
        for path in write_table(frame, self.out, stem):
            if path.suffix == ".md":
                print(f"\n{stem}:\n{path.read_text()}")


def baselines(cells: Sequence[str], draws: int, **fields: Any) -> SearchSpec:
    """Zoo cells with ``draws`` random hyperparameter draws each, as ``optuna-rnn baselines``.

    Unpruned: every draw trains to its budget, as the paper's did, so that best and median
    compare cells on equal terms.
    """
    return SearchSpec(sampler="random", pruner="none", n_trials=len(cells) * draws,
                      seed_cells=tuple(cells), seed_draws=draws, **fields)


def main(
    name: str,
    doc: str,
    presets: Mapping[str, Mapping[str, Any]],
    run: Callable[[Mapping[str, Any], Context], None],
    argv: Sequence[str] | None = None,
) -> None:
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--storage", default=f"sqlite:///results/{name}.db")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results") / name)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    context = Context(f"{name}-{args.preset}", args.storage, args.workers, args.out / args.preset)
    run(presets[args.preset], context)

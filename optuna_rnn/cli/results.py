"""The commands that read results: ``leaderboard``, ``show`` and ``export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optuna_rnn.cell import Cell, CellError
from optuna_rnn.cli.args import (
    UsageError,
    add_storage_options,
    load_study,
    positive_int,
)
from optuna_rnn.keys import EQUATIONS

__all__ = ["add_parsers", "cell_of"]

SHOW_HELP = """\
Print a cell as equations (and its fingerprint), or draw it as SVG. The cell is a zoo
name, a file of equations, or a trial of a study (--trial N).

examples: optuna-rnn show mut1
          optuna-rnn show my_cell.txt --svg my_cell.svg
          optuna-rnn show --trial 12 --study-name arithmetic-gated-evolution
"""

EXPORT_HELP = """\
Write a study's results for people (--out: trials.csv, leaderboard.csv/.md,
findings.csv/.md with each cell's best and median and their bootstrap intervals,
orderings.csv/.md with the probability of each of the paper's findings, PNG plots)
and/or the trained model of its best trial (--model: the weights as safetensors, the cell
as equations, JSON and SVG, and a README on how to load it).

examples: optuna-rnn export --out results
          optuna-rnn export --model best-model
"""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser(
        "leaderboard",
        help="best score per cell architecture",
        description="One row per cell architecture of a study, best first.",
    )
    add_storage_options(board)
    board.add_argument("--top", type=positive_int, default=20, help="rows (default: 20)")
    board.add_argument(
        "--format",
        choices=("text", "csv", "markdown"),
        default="text",
        help="text (default), csv (every column) or markdown",
    )
    board.set_defaults(run=_leaderboard)

    show = commands.add_parser(
        "show",
        help="a cell as equations or SVG",
        description=SHOW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("cell", nargs="?", help="a zoo name or a file of equations")
    show.add_argument("--trial", type=int, help="the cell of this trial number instead")
    show.add_argument("--svg", metavar="FILE", help="write the diagram as SVG ('-': stdout)")
    add_storage_options(show)
    show.set_defaults(run=_show)

    export = commands.add_parser(
        "export",
        help="a study's tables and plots, or its trained model",
        description=EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_storage_options(export)
    export.add_argument("--out", type=Path, help="directory for the tables and plots")
    export.add_argument("--no-plots", action="store_true", help="tables only")
    export.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="directory for the trained model of the best trial (or --trial)",
    )
    export.add_argument("--trial", type=int, help="with --model: this trial number's model")
    export.add_argument(
        "--artifacts",
        metavar="PATH",
        help="with --model: the artifact folder, where it is not the one the study records",
    )
    export.set_defaults(run=_export)


def cell_of(args: argparse.Namespace) -> Cell:
    """The cell that ``show``'s arguments name."""
    from optuna_rnn.cell import zoo

    if (args.cell is None) == (args.trial is None):
        raise UsageError("name a cell (zoo name or equations file) or --trial N, not both")
    if args.trial is not None:
        study = load_study(args)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not trials or EQUATIONS not in trials[0].user_attrs:
            raise UsageError(f"study {study.study_name!r} has no trial {args.trial} with a cell")
        return Cell.parse(trials[0].user_attrs[EQUATIONS])
    if args.cell in zoo.names():
        return zoo.get(args.cell)
    path = Path(args.cell)
    if not path.is_file():
        raise UsageError(
            f"{args.cell!r} is neither a zoo cell ({', '.join(zoo.names())}) nor a file"
        )
    try:
        return Cell.parse(path.read_text(encoding="utf-8"))
    except CellError as err:
        raise UsageError(f"{path}: {err}") from None


def _show(args: argparse.Namespace) -> None:
    from optuna_rnn.cell import zoo

    cell = cell_of(args)
    if args.svg is None:
        name = zoo.name_of(cell)
        print(cell)
        print(f"\n# fingerprint {cell.fingerprint}" + (f" (zoo: {name})" if name else ""))
        return
    from optuna_rnn.cell.render import render_svg

    svg = render_svg(cell)
    if args.svg == "-":
        sys.stdout.write(svg)
    else:
        Path(args.svg).write_text(svg, encoding="utf-8")
        print(f"wrote {args.svg}")


def _leaderboard(args: argparse.Namespace) -> None:
    from optuna_rnn import leaderboard
    from optuna_rnn.export import format_leaderboard, to_markdown

    board = leaderboard(load_study(args))
    if args.format == "csv":
        board.head(args.top).to_csv(sys.stdout, index=False)
    elif args.format == "markdown":
        sys.stdout.write(to_markdown(board.head(args.top)))
    else:
        print(format_leaderboard(board, top=args.top))


def _export(args: argparse.Namespace) -> None:
    import importlib.util

    from optuna_rnn.export import export_study
    from optuna_rnn.findings import export_findings, task_label
    from optuna_rnn.models import export_model

    if args.out is None and args.model is None:
        raise UsageError("name what to write: --out DIR (tables, plots) and/or --model DIR")
    plots = args.out is not None and not args.no_plots
    if plots and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("plots need matplotlib: pip install 'optuna-rnn[plots]', or --no-plots")
    study = load_study(args)
    written = []
    if args.model is not None:
        try:
            written += export_model(study, args.model, args.trial, artifact_store=args.artifacts)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.out is not None:
        written += export_study(study, args.out, plots=not args.no_plots)
        written += export_findings({task_label(study): study}, args.out, plots=not args.no_plots)
    for path in written:
        print(path)

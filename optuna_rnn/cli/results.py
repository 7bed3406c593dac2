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

__all__ = ["add_parsers", "cell_of"]

SHOW_HELP = """\
Print a cell as equations (and its fingerprint), or draw it as SVG. The cell is a zoo
name, a file of equations, or a trial of a study (--trial N).

examples: optuna-rnn show mut1
          optuna-rnn show my_cell.txt --svg my_cell.svg
          optuna-rnn show --trial 12 --study-name arithmetic-gated-evolution
"""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    board = commands.add_parser(
        "leaderboard", help="best score per cell architecture",
        description="One row per cell architecture of a study, best first.",
    )
    add_storage_options(board)
    board.add_argument("--top", type=positive_int, default=20, help="rows (default: 20)")
    board.add_argument("--format", choices=("text", "csv", "markdown"), default="text",
                       help="text (default), csv (every column) or markdown")
    board.set_defaults(run=_leaderboard)

    show = commands.add_parser(
        "show", help="a cell as equations or SVG", description=SHOW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("cell", nargs="?", help="a zoo name or a file of equations")
    show.add_argument("--trial", type=int, help="the cell of this trial number instead")
    show.add_argument("--svg", metavar="FILE", help="write the diagram as SVG ('-': stdout)")
    add_storage_options(show)
    show.set_defaults(run=_show)

    export = commands.add_parser(
        "export", help="CSV, markdown and PNG plots of a study",
        description="Write trials.csv, leaderboard.csv/.md, findings.csv/.md (each cell's "
        "best and median with bootstrap intervals), orderings.csv/.md (the probability of "
        "each of the paper's findings) and PNG plots of a study.",
    )
    add_storage_options(export)
    export.add_argument("--out", type=Path, required=True, help="directory to write")
    export.add_argument("--no-plots", action="store_true", help="tables only")
    export.set_defaults(run=_export)


def cell_of(args: argparse.Namespace) -> Cell:
    """The cell that ``show``'s arguments name."""
    from optuna_rnn.cell import zoo

    if (args.cell is None) == (args.trial is None):
        raise UsageError("name a cell (zoo name or equations file) or --trial N, not both")
    if args.trial is not None:
        study = load_study(args)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == args.trial]
        if not trials or "equations" not in trials[0].user_attrs:
            raise UsageError(f"study {study.study_name!r} has no trial {args.trial} with a cell")
        return Cell.parse(trials[0].user_attrs["equations"])
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

    if not args.no_plots and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("plots need matplotlib: pip install 'optuna-rnn[plots]', or --no-plots")
    from optuna_rnn.findings import export_findings, task_label

    study = load_study(args)
    for path in export_study(study, args.out, plots=not args.no_plots):
        print(path)
    for path in export_findings({task_label(study): study}, args.out, plots=not args.no_plots):
        print(path)

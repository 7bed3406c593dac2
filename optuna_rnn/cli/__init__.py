"""The ``optuna-rnn`` command line: search, join, inspect and export studies.

Each command is a thin layer over the library; ``optuna-rnn COMMAND --help`` explains
it. Problems with what was asked (bad values, unknown studies or cells) end with a
one-line message and exit status 2, as argparse does for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import optuna

from optuna_rnn import __version__
from optuna_rnn.cell import CellError
from optuna_rnn.cli import results, search
from optuna_rnn.cli.args import UsageError

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Search recurrent-cell architectures with Optuna, after Jozefowicz, Zaremba and Sutskever
(ICML 2015). Studies live in a storage: the SQLite file optuna_rnn.db by default, a journal
file, or a PostgreSQL server shared by several machines; trial diagrams and trained models
in an artifact folder (beside the SQLite file: optuna_rnn-artifacts). Watch a search with
`optuna-dashboard sqlite:///optuna_rnn.db --artifact-dir optuna_rnn-artifacts`.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-rnn", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every trial (Optuna's INFO messages)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    search.add_parsers(commands)
    results.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0, or 2 for a usage problem)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    try:
        args.run(args)
    except (UsageError, CellError) as err:
        parser.exit(2, f"optuna-rnn {args.command}: error: {err}\n")
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


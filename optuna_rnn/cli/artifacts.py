"""Where a CLI search keeps its artifacts (diagrams, trained models), and how to view them.

By default a folder beside a SQLite or journal file (``optuna_rnn.db`` ->
``optuna_rnn-artifacts/``); ``--artifacts PATH`` names another, e.g. one every worker of a
PostgreSQL study shares, and ``--artifacts none`` keeps none. The folder goes into the
search's recipe (objective option ``artifact_store``), so workers upload there too.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from optuna_rnn.storage import JOURNAL_PREFIX, redact

__all__ = ["add_artifacts_option", "artifact_folder", "dashboard_command", "default_folder"]

SUFFIX = "-artifacts"


def add_artifacts_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifacts",
        metavar="PATH",
        help="folder of the trials' diagrams and trained models, shared by all workers "
        f"(default: beside a SQLite or journal file, NAME{SUFFIX}; 'none': keep none)",
    )


def _storage_file(url: str) -> Path | None:
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX) :])
    if url.startswith("sqlite"):
        import sqlalchemy.engine

        database = sqlalchemy.engine.make_url(url).database
        return Path(database) if database and database != ":memory:" else None
    return None


def default_folder(url: str) -> Path | None:
    """The folder beside the storage's file, or ``None`` for a database server."""
    path = _storage_file(url)
    return None if path is None else path.with_name(path.stem + SUFFIX)


def artifact_folder(args: argparse.Namespace) -> str | None:
    """The absolute folder ``--artifacts`` (or the default) names, or ``None``."""
    if args.artifacts == "none":
        return None
    folder = Path(args.artifacts) if args.artifacts else default_folder(args.storage)
    if folder is None or (not args.artifacts and not folder.parent.is_dir()):
        # The storage file's own folder is missing: opening the storage fails with its own
        # error, and validating the settings must not make that folder on the way.
        return None
    return str(folder.resolve())


def _shown(folder: str) -> str:
    relative = os.path.relpath(folder)
    return relative if not relative.startswith("..") else folder


def dashboard_command(url: str, folder: str | None) -> str:
    """The optuna-dashboard command that shows the study with its artifacts."""
    command = f"optuna-dashboard {shlex.quote(redact(url))}"
    return command if folder is None else f"{command} --artifact-dir {shlex.quote(_shown(folder))}"

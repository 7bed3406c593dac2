"""Argument types and option groups shared by the ``optuna-rnn`` commands.

Each type turns a bad value into :class:`argparse.ArgumentTypeError`, so argparse prints
``optuna-rnn <command>: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import optuna

from optuna_rnn.cli.spec import (
    PRUNERS,
    SPACES,
    SearchSpec,
    parse_assignment,
    parse_task,
)
from optuna_rnn.storage import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_STORAGE,
    check_url,
    open_storage,
    redact,
    study_names,
)

__all__ = [
    "TrialsFailed",
    "UsageError",
    "add_run_options",
    "add_spec_options",
    "add_storage_options",
    "load_study",
    "open_checked",
    "resolve_study_name",
    "spec_from_args",
]


class UsageError(Exception):
    """A problem with what the user asked for; reported like a bad argument (status 2)."""


class TrialsFailed(Exception):
    """Every trial of a run failed (status 1): the settings cannot work."""


def _typed(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """``convert`` as an argparse type: its ValueError becomes argparse's error message."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err) or f"invalid {what}: {text!r}") from None

    return parse


def _positive(kind: type) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise ValueError(f"must be a positive {kind.__name__}, got {text!r}")
        return value

    return _typed(convert, f"positive {kind.__name__}")


def _task(text: str) -> str:
    parse_task(text)
    return text


def _names(text: str) -> tuple[str, ...]:
    if text == "none":
        return ()
    names = tuple(n for n in text.split(",") if n)
    if not names:
        raise ValueError(f"no names in {text!r}; write 'none' for none")
    return names


positive_int = _positive(int)
positive_float = _positive(float)


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"must be a non-negative int, got {text!r}")
    return int(text)


non_negative_int = _typed(_non_negative_int, "non-negative int")
storage_url = _typed(check_url, "storage URL")
task_name = _typed(_task, "task")
key_value = _typed(parse_assignment, "KEY=VALUE")
name_list = _typed(_names, "comma-separated names")


def add_storage_options(parser: argparse.ArgumentParser, *, study_required: bool = False) -> None:
    parser.add_argument(
        "--storage",
        type=storage_url,
        default=DEFAULT_STORAGE,
        help="sqlite:///FILE, journal:FILE or postgresql://USER:PASSWORD@HOST/DB "
        f"(default: {DEFAULT_STORAGE})",
    )
    parser.add_argument(
        "--study-name",
        required=study_required,
        help="the study; optional when the storage holds exactly one",
    )


def add_spec_options(parser: argparse.ArgumentParser, *, n_trials: int | None = None) -> None:
    """Options of a :class:`SearchSpec`; ``--n-trials`` only with a default ``n_trials``."""
    defaults = SearchSpec()
    parser.add_argument(
        "--set",
        dest="objective",
        metavar="KEY=VALUE",
        type=key_value,
        action="append",
        default=[],
        help="an option of make_objective, VALUE as JSON, e.g. --set "
        "max_steps=500 --set max_seconds=30 --set artifact_store=artifacts (repeatable)",
    )
    parser.add_argument(
        "--space",
        choices=SPACES,
        help="gated: gate-wiring space; graph: open-ended node graphs "
        "(default: graph for the evolution sampler, else gated)",
    )
    parser.add_argument(
        "--max-nodes",
        type=positive_int,
        help="node limit of the graph space (default: GraphSpace's)",
    )
    parser.add_argument(
        "--pruner",
        choices=PRUNERS,
        help="stops poor trials early (default: median; none with several --objectives)",
    )
    parser.add_argument(
        "--population-size",
        type=positive_int,
        default=defaults.population_size,
        help=f"architectures the evolution sampler keeps (default: {defaults.population_size})",
    )
    parser.add_argument(
        "--aging",
        action="store_true",
        help="evolution keeps the youngest architectures, not the best (regularised evolution)",
    )
    parser.add_argument(
        "--tournament-size",
        type=positive_int,
        help="members drawn to pick each parent, the best wins (default: 1, "
        "or a quarter of the population with --aging)",
    )
    parser.add_argument(
        "--n-startup-trials",
        type=non_negative_int,
        default=defaults.n_startup_trials,
        help="trials of an unseeded evolution study that train random cells before "
        f"evolution starts (default: {defaults.n_startup_trials})",
    )
    parser.add_argument(
        "--any-cell",
        action="store_true",
        help="evolution may propose cells that cannot remember (default: only cells whose "
        "input reaches a loop of states that h' reads)",
    )
    if n_trials is not None:
        parser.add_argument(
            "--n-trials",
            type=positive_int,
            default=n_trials,
            help="total trials of the study, over all workers; rerunning the "
            f"command resumes up to this count (default: {n_trials})",
        )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="local worker processes, one torch thread each unless "
        "--set torch_threads=N (default: 1)",
    )
    parser.add_argument(
        "--timeout", type=positive_float, help="seconds after which workers start no new trial"
    )
    parser.add_argument("--seed", type=int, help="seeds the sampler (worker k: seed + k)")
    parser.add_argument(
        "--heartbeat-interval",
        type=positive_int,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help="seconds between a running trial's heartbeats (RDB storages; "
        f"default: {DEFAULT_HEARTBEAT_INTERVAL})",
    )
    parser.add_argument(
        "--grace-period",
        type=positive_int,
        default=DEFAULT_GRACE_PERIOD,
        help="seconds without a heartbeat after which a trial is failed and "
        f"retried (default: {DEFAULT_GRACE_PERIOD})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def spec_from_args(args: argparse.Namespace, **fields: Any) -> SearchSpec:
    """The :class:`SearchSpec` the options describe; ``fields`` set or override the rest."""
    options = {
        "space": args.space,
        "max_nodes": args.max_nodes,
        "pruner": args.pruner,
        "population_size": args.population_size,
        "aging": args.aging,
        "tournament_size": args.tournament_size,
        "n_startup_trials": args.n_startup_trials,
        "any_cell": args.any_cell,
        "seed": args.seed,
        "objective": dict(args.objective),
    }
    if hasattr(args, "n_trials"):
        options["n_trials"] = args.n_trials
    try:
        return SearchSpec(**{**options, **fields})
    except ValueError as err:
        raise UsageError(str(err)) from None


def open_checked(args: argparse.Namespace) -> optuna.storages.BaseStorage:
    """The storage of ``--storage``, with the heartbeat options where the command has them."""
    try:
        return open_storage(
            args.storage,
            heartbeat_interval=getattr(args, "heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL),
            grace_period=getattr(args, "grace_period", DEFAULT_GRACE_PERIOD),
        )
    except ValueError as err:
        raise UsageError(str(err)) from None


def resolve_study_name(args: argparse.Namespace, storage: optuna.storages.BaseStorage) -> str:
    """``--study-name``, or the only study in the storage; a clear error otherwise."""
    names = study_names(storage)
    if args.study_name in names or (args.study_name is None and len(names) == 1):
        return args.study_name or names[0]
    held = f"studies: {', '.join(names)}" if names else "no study"
    if args.study_name is None:
        raise UsageError(f"--study-name is needed; {redact(args.storage)} holds {held}")
    raise UsageError(f"no study {args.study_name!r}; {redact(args.storage)} holds {held}")


def load_study(args: argparse.Namespace) -> optuna.Study:
    """The study the storage options name, for reading."""
    storage = open_checked(args)
    return optuna.load_study(study_name=resolve_study_name(args, storage), storage=storage)

"""The commands that run trials: ``search``, ``worker`` and ``baselines``."""

from __future__ import annotations

import argparse
import dataclasses

import optuna

from optuna_rnn.cli.args import (
    TrialsFailed,
    UsageError,
    add_run_options,
    add_spec_options,
    add_storage_options,
    name_list,
    open_checked,
    positive_int,
    resolve_study_name,
    spec_from_args,
    task_name,
)
from optuna_rnn.cli.artifacts import add_artifacts_option, artifact_folder, dashboard_command
from optuna_rnn.cli.run import (
    Progress,
    TrialQuota,
    WorkerOptions,
    live_trials,
    run_worker,
    run_workers,
)
from optuna_rnn.cli.spec import SAMPLERS, SPEC_ATTR, SearchSpec
from optuna_rnn.storage import open_storage, redact

__all__ = ["PAPER_CELLS", "add_parsers", "prepare_study", "run_search", "run_study"]

_logger = optuna.logging.get_logger(__name__)

#: The cells of the paper's Table 2.
PAPER_CELLS = (
    "tanh",
    "lstm",
    "lstm_f",
    "lstm_i",
    "lstm_o",
    "lstm_b",
    "gru",
    "mut1",
    "mut2",
    "mut3",
)

SEARCH_HELP = """\
Search cell architectures on one or more tasks. Creates the study (or resumes it: the
same command run again finishes an interrupted search), stores the search's recipe in it
so that `optuna-rnn worker` can join from anywhere, runs the trials, and prints the
leaderboard. Several --task options score each cell by its worst ratio to the GRU over
the tasks, as the paper did.

example: optuna-rnn search --task arithmetic:small --n-trials 50 --workers 2
"""
WORKER_HELP = """\
Join a study that `optuna-rnn search` created, on this machine or another sharing its
storage, and run its trials until the study has its trial count. The task, space,
sampler and pruner come from the study itself.

example: optuna-rnn worker --storage postgresql://USER:PASSWORD@HOST/DB \\
             --study-name arithmetic-gated-evolution --workers 2
"""
BASELINES_HELP = """\
Train zoo cells with random hyperparameter draws (the paper's baselines): --draws trials
per cell, hyperparameters from the objective's choice lists.

example: optuna-rnn baselines --task arithmetic:small --cells lstm,lstm_b,gru --draws 10
"""


def add_parsers(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "search",
        help="search cell architectures",
        description=SEARCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    search.add_argument(
        "--task",
        action="append",
        type=task_name,
        metavar="TASK",
        help="NAME[:PRESET][,KEY=VALUE...]: memorization, arithmetic, xml, "
        "ptb or jsb, an optional preset and options of the task class, e.g. "
        "arithmetic:small or memorization,length=3 (repeatable; default: "
        "memorization)",
    )
    search.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="evolution",
        help="evolution: the paper's search (default)",
    )
    search.add_argument(
        "--objectives",
        type=name_list,
        default=("score",),
        metavar="NAMES",
        help="what to optimise, comma-separated: score, params (the "
        "parameter count), tokens_per_second; several make a "
        "multi-objective study of one task, unpruned (default: score)",
    )
    search.add_argument(
        "--seed-cells",
        type=name_list,
        default=("lstm", "gru"),
        metavar="NAMES",
        help="zoo cells to start from, comma-separated, or 'none' (default: lstm,gru)",
    )
    search.add_argument(
        "--top", type=positive_int, default=10, help="leaderboard rows to print (default: 10)"
    )
    add_spec_options(search, n_trials=20)
    add_artifacts_option(search)
    add_storage_options(search)
    add_run_options(search)
    search.set_defaults(run=_search)

    worker = commands.add_parser(
        "worker",
        help="join a study from this or another machine",
        description=WORKER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_storage_options(worker)
    add_run_options(worker)
    worker.set_defaults(run=_worker)

    baselines = commands.add_parser(
        "baselines",
        help="train zoo cells with random hyperparameters",
        description=BASELINES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    baselines.add_argument(
        "--task",
        type=task_name,
        default="memorization",
        metavar="TASK",
        help="NAME[:PRESET][,KEY=VALUE...] as for search (default: memorization)",
    )
    baselines.add_argument(
        "--cells",
        type=name_list,
        default=PAPER_CELLS,
        metavar="NAMES",
        help="zoo cells, comma-separated (default: the paper's ten)",
    )
    baselines.add_argument(
        "--draws", type=positive_int, default=5, help="hyperparameter draws per cell (default: 5)"
    )
    baselines.add_argument(
        "--top", type=positive_int, default=20, help="leaderboard rows to print (default: 20)"
    )
    add_spec_options(baselines)
    add_artifacts_option(baselines)
    add_storage_options(baselines)
    add_run_options(baselines)
    baselines.set_defaults(run=_baselines)


def prepare_study(
    storage: optuna.storages.BaseStorage, name: str, spec: SearchSpec
) -> optuna.Study:
    """Create the study with ``spec`` (and its seed trials), or resume it with a new count."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = optuna.create_study(storage=storage, study_name=name, directions=spec.directions())
        if len(spec.objectives) > 1:
            from optuna_rnn.dashboard import name_objectives

            name_objectives(study, spec.objectives)
        study.set_user_attr(SPEC_ATTR, spec.to_json())
        spec.enqueue_seeds(study)
        return study
    try:
        stored = SearchSpec.from_study(study)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not stored.same_search(spec):
        raise UsageError(
            f"study {name!r} already runs a different search ({stored.to_json()}); join it "
            "with `optuna-rnn worker` or pick another --study-name"
        )
    if stored.n_trials != spec.n_trials:
        study.set_user_attr(
            SPEC_ATTR, dataclasses.replace(stored, n_trials=spec.n_trials).to_json()
        )
    return study


def run_study(study: optuna.Study, options: WorkerOptions, *, workers: int, progress: bool) -> None:
    """Run ``workers`` workers on ``study`` (in this process when one) with a progress bar."""
    spec = SearchSpec.from_study(study)
    bar = Progress(study, spec.n_trials, enabled=progress)
    if progress:
        options = dataclasses.replace(options, verbosity=optuna.logging.WARNING)
    try:
        if workers == 1:
            run_worker(options, callbacks=[bar])
        else:
            codes = run_workers(options, workers, on_poll=bar)
            failed = [c for c in codes if c != 0]
            if failed:
                _logger.warning(f"{len(failed)} of {workers} workers exited with {failed}")
    finally:
        bar.close()


def run_search(
    spec: SearchSpec,
    *,
    storage: str,
    study_name: str,
    workers: int = 1,
    timeout: float | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Create or resume the study ``spec`` describes and run it to its trial count.

    The library form of ``optuna-rnn search``, for scripts such as those in ``studies/``.
    """
    study = prepare_study(open_storage(storage), study_name, spec)
    options = WorkerOptions(
        storage=storage,
        study_name=study_name,
        timeout=timeout,
        seed=spec.seed,
        verbosity=optuna.logging.get_verbosity(),
    )
    run_study(study, options, workers=workers, progress=progress)
    return study


def _options(args: argparse.Namespace, study_name: str) -> WorkerOptions:
    return WorkerOptions(
        storage=args.storage,
        study_name=study_name,
        timeout=args.timeout,
        seed=args.seed,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
        verbosity=optuna.logging.get_verbosity(),
    )


def _run_and_report(args: argparse.Namespace, study: optuna.Study) -> None:
    from optuna_rnn import leaderboard
    from optuna_rnn.export import format_leaderboard

    print(f"study {study.study_name!r} in {redact(args.storage)}")
    _print_dashboard(args.storage, study)
    run_study(
        study, _options(args, study.study_name), workers=args.workers, progress=not args.no_progress
    )
    print(format_leaderboard(leaderboard(study), top=args.top))
    if len(study.directions) > 1:
        front = sorted(t.number for t in study.best_trials)
        print(f"\nPareto front of {', '.join(study.metric_names or [])}: trials {front}")
    _check_outcome(study, timeout=args.timeout)


def _print_dashboard(url: str, study: optuna.Study) -> None:
    folder = SearchSpec.from_study(study).objective.get("artifact_store")
    print(f"watch it with: {dashboard_command(url, folder)}")
    if folder is None:
        print(
            "(trials keep no diagram or model: pass --artifacts PATH, a folder all workers share)"
        )


def _objective_options(args: argparse.Namespace) -> dict:
    """``--set`` options, with ``artifact_store`` from ``--artifacts`` or the default."""
    options = dict(args.objective)
    if args.artifacts is not None or "artifact_store" not in options:
        options["artifact_store"] = artifact_folder(args)
    if options["artifact_store"] is None:
        del options["artifact_store"]
    return options


def _check_outcome(study: optuna.Study, *, timeout: float | None) -> None:
    """Say when the study is short of its count; raise TrialsFailed when every finished
    trial failed (the settings cannot work, whatever the exit status of the workers)."""
    from optuna.trial import TrialState

    state = TrialQuota(study, SearchSpec.from_study(study).n_trials).state()
    if not state.complete and timeout is None:
        _logger.warning(
            f"the study has {state.finished} of {state.target} trials finished; the rest are "
            "running elsewhere or were left RUNNING by a worker that died (run the same "
            "command again to finish the count)"
        )
    finished = [t for t in live_trials(study.get_trials(deepcopy=False)) if t.state.is_finished()]
    if finished and all(t.state == TrialState.FAIL for t in finished):
        reason = finished[-1].system_attrs.get("fail_reason", "see the log above")
        raise TrialsFailed(
            f"every one of the {len(finished)} finished trials failed; the last: {reason}"
        )


def _search(args: argparse.Namespace) -> None:
    spec = spec_from_args(
        args,
        tasks=tuple(args.task or ("memorization",)),
        sampler=args.sampler,
        seed_cells=args.seed_cells,
        objectives=args.objectives,
        objective=_objective_options(args),
    )
    name = args.study_name or f"{'+'.join(spec.tasks)}-{spec.space}-{spec.sampler}"
    spec.validate()
    _run_and_report(args, prepare_study(open_checked(args), name, spec))


def _baselines(args: argparse.Namespace) -> None:
    spec = spec_from_args(
        args,
        tasks=(args.task,),
        sampler="random",
        n_trials=len(args.cells) * args.draws,
        seed_cells=args.cells,
        seed_draws=args.draws,
        objective=_objective_options(args),
    )
    name = args.study_name or f"baselines-{args.task}"
    spec.validate()
    _run_and_report(args, prepare_study(open_checked(args), name, spec))


def _worker(args: argparse.Namespace) -> None:
    storage = open_checked(args)
    study = optuna.load_study(study_name=resolve_study_name(args, storage), storage=storage)
    try:
        SearchSpec.from_study(study).validate()
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"joining study {study.study_name!r} in {redact(args.storage)}")
    _print_dashboard(args.storage, study)
    run_study(
        study, _options(args, study.study_name), workers=args.workers, progress=not args.no_progress
    )

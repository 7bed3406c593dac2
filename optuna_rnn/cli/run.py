"""Run a study's trials in one process or several, all stopping at one shared count.

Workers share nothing but the storage, so the trial count is kept there too. A trial is
*live* unless a retry replaced it (its number is in some trial's ``retry_history``, as
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` records) or it ended as
surplus. A worker starts a trial while fewer live trials have started than the target
(or an enqueued trial waits) and stops once that many have finished. When two workers
start the last slot at once, the later trial number ends FAIL at once with
``ended_because="surplus"`` and counts for nothing; so the study ends with exactly the
requested number of live finished trials, however many workers join or die.

With heartbeats (RDB storages), a worker with nothing to start waits for the others'
trials, failing stale ones so that their retries run; without (journal files), it leaves.
Optuna's heartbeat is RDB-only, so on a journal file a worker instead fails the RUNNING
trials of workers on its own machine whose process is gone (each trial records its
worker as ``host:pid``) and retries them as the heartbeat would; a trial left by a worker
on another machine stays RUNNING, and the command then reports the shortfall.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn._optuna_compat import (
    heartbeat_enabled,
    storage_of,
    study_id_of,
    trial_id_of,
)
from optuna_rnn.cli.spec import SearchSpec
from optuna_rnn.keys import ENDED_BECAUSE, SURPLUS
from optuna_rnn.keys import WORKER as WORKER_ATTR
from optuna_rnn.storage import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    open_storage,
)

__all__ = [
    "Progress",
    "QuotaState",
    "SurplusTrial",
    "TrialQuota",
    "WorkerOptions",
    "fail_orphaned_trials",
    "live_trials",
    "run_worker",
    "run_workers",
    "work",
]

_logger = optuna.logging.get_logger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class SurplusTrial(Exception):
    """A trial that started after the study's last slot was taken; it ends unrun."""


def live_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward a study's target, in trial-number order."""
    superseded = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return sorted(
        (
            t
            for t in trials
            if t.number not in superseded and t.user_attrs.get(ENDED_BECAUSE) != SURPLUS
        ),
        key=lambda t: t.number,
    )


@dataclasses.dataclass(frozen=True)
class QuotaState:
    """One reading of a study against its target."""

    finished: int
    started: int
    waiting: int
    target: int

    @property
    def complete(self) -> bool:
        return self.finished >= self.target

    @property
    def has_room(self) -> bool:
        """Whether starting a trial now can fill a slot (a fresh one or a waiting one)."""
        return self.started < self.target or self.waiting > 0


class TrialQuota:
    """At most ``target`` live trials in ``study``, enforced through the storage alone."""

    def __init__(self, study: optuna.Study, target: int) -> None:
        self.study = study
        self.target = target
        #: Trials of this process that another worker failed as stale while they ran.
        self.lost: set[int] = set()

    def state(self) -> QuotaState:
        live = live_trials(self.study.get_trials(deepcopy=False))
        waiting = sum(t.state == TrialState.WAITING for t in live)
        finished = sum(t.state in _FINISHED for t in live)
        return QuotaState(finished, len(live) - waiting, waiting, self.target)

    def admits(self, number: int) -> bool:
        """Whether trial ``number`` (already started) holds one of the first target slots."""
        numbers = [t.number for t in live_trials(self.study.get_trials(deepcopy=False))]
        return numbers.index(number) < self.target if number in numbers else False

    def guard(self, objective: Callable[[optuna.Trial], float]) -> Callable[[optuna.Trial], float]:
        """``objective``, run only for trials that hold a slot; records the worker."""
        worker = f"{socket.gethostname()}:{os.getpid()}"

        storage, study_id = storage_of(self.study), study_id_of(self.study)
        heartbeat = heartbeat_enabled(storage)

        def guarded(trial: optuna.Trial) -> float:
            trial_id = trial_id_of(trial, storage, study_id)
            if heartbeat:
                # Optuna's heartbeat thread records its first beat concurrently with the
                # objective; a trial with no beat is never stale, so a worker killed before
                # that beat would leave it RUNNING for good and every worker waiting on it.
                storage.record_heartbeat(trial_id)
            trial.set_user_attr(WORKER_ATTR, worker)
            if not self.admits(trial.number):
                trial.set_user_attr(ENDED_BECAUSE, SURPLUS)
                raise SurplusTrial(
                    f"the study already has its {self.target} trials; trial {trial.number} "
                    "started with another worker's last one and ends unrun"
                )
            try:
                return objective(trial)
            finally:
                if heartbeat and storage.get_trial(trial_id).state.is_finished():
                    self.lost.add(trial.number)

        return guarded


def _gone(pid: int) -> bool:
    """Whether process ``pid`` of this machine has ended (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def fail_orphaned_trials(study: optuna.Study, *, max_retry: int | None = 3) -> list[int]:
    """Fail the RUNNING trials whose worker ran on this machine and has died, and queue
    each again as Optuna's heartbeat retry does: the journal file's stand-in for the
    heartbeat. Returns the failed trials' numbers."""
    host = socket.gethostname()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    storage, study_id = storage_of(study), study_id_of(study)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if where != host or not pid.isdigit() or not _gone(int(pid)):
            continue
        trial_id = trial_id_of(trial, storage, study_id)
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            _logger.warning(f"trial {trial.number} failed: its worker {where}:{pid} is gone")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                retry(study, storage.get_trial(trial_id))
            failed.append(trial.number)
    return failed


def work(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    target: int,
    *,
    timeout: float | None = None,
    poll: float = 1.0,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> None:
    """Run trials of ``study`` until it has ``target`` live finished trials or time is up.

    A failing trial (an exception in ``objective``) ends FAIL, is logged, and counts; the
    worker goes on. ``timeout`` stops starting trials after that many seconds.
    """
    quota = TrialQuota(study, target)
    guarded = quota.guard(objective)
    heartbeat = heartbeat_enabled(storage_of(study))
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        if heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                fail_stale_trials(study)
        else:
            fail_orphaned_trials(study)
        state = quota.state()
        if state.complete:
            return
        if state.has_room:
            quota.lost.clear()
            try:
                study.optimize(guarded, n_trials=1, catch=(Exception,), callbacks=list(callbacks))
            except Exception:
                # Optuna cannot tell a trial that another worker already failed as stale.
                if not quota.lost:
                    raise
                _logger.warning(
                    f"Trial {quota.lost.pop()} was failed as stale by another worker while it "
                    "ran: its heartbeat came later than the grace period allows (a loaded "
                    "machine, or --grace-period too short). Its retry runs in its place; "
                    "this worker goes on."
                )
        elif heartbeat:
            time.sleep(poll)
        else:
            return


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """How one worker process joins a study (picklable, for spawned processes)."""

    storage: str
    study_name: str
    timeout: float | None = None
    seed: int | None = None
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: int = DEFAULT_GRACE_PERIOD
    verbosity: int = optuna.logging.INFO


def load(options: WorkerOptions) -> tuple[optuna.Study, SearchSpec]:
    """Open the storage and the study with the sampler and pruner its spec names."""
    storage = open_storage(
        options.storage,
        heartbeat_interval=options.heartbeat_interval,
        grace_period=options.grace_period,
    )
    spec = SearchSpec.from_study(optuna.load_study(study_name=options.study_name, storage=storage))
    study = optuna.load_study(
        study_name=options.study_name,
        storage=storage,
        sampler=spec.build_sampler(options.seed),
        pruner=spec.build_pruner(),
    )
    return study, spec


def run_worker(
    options: WorkerOptions,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> None:
    """One worker with its own storage connection; it reads the trial count as it starts.

    Torch threads are the objective's business (``torch_threads``, 1 by default: one
    single-threaded trial per core).
    """
    optuna.logging.set_verbosity(options.verbosity)
    study, spec = load(options)
    work(
        study,
        spec.build_objective(),
        spec.n_trials,
        timeout=options.timeout,
        poll=min(5.0, options.heartbeat_interval),
        callbacks=callbacks,
    )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_workers(
    options: WorkerOptions,
    n_workers: int,
    *,
    on_poll: Callable[[], None] | None = None,
) -> list[int]:
    """Run ``n_workers`` spawned worker processes; worker ``k`` seeds with ``seed + k``.

    Returns their exit codes. ``on_poll`` runs about once a second while they work (the
    progress bar). Spawned, not forked: each process imports torch and opens the storage
    itself, so no engine, lock or thread pool is shared by accident. A SIGTERM to this
    process (``kill PID``) ends the workers too, as Ctrl-C does, rather than leaving them
    to run on unseen; their trials fail by heartbeat and run again when the study resumes.
    """
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=run_worker,
            args=(
                dataclasses.replace(
                    options, seed=None if options.seed is None else options.seed + k
                ),
            ),
            name=f"optuna-rnn-worker-{k}",
        )
        for k in range(n_workers)
    ]
    for process in processes:
        process.start()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        while any(p.is_alive() for p in processes):
            if on_poll is not None:
                on_poll()
            for process in processes:
                process.join(timeout=1.0 / n_workers)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if on_poll is not None:
        on_poll()
    return [p.exitcode for p in processes]


class Progress:
    """A tqdm bar of a study's live finished trials, read from the storage.

    Call it as an Optuna callback (in-process worker) or with no arguments (polling
    while spawned workers run); it shows the best value so far.
    """

    def __init__(self, study: optuna.Study, target: int, *, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self._quota = TrialQuota(study, target)
        self._bar = tqdm(total=target, unit="trial", disable=not enabled, dynamic_ncols=True)

    def __call__(self, *_: object) -> None:
        state = self._quota.state()
        done = min(state.finished, state.target)
        if done == self._bar.n:
            return
        study = self._quota.study
        try:
            if len(study.directions) == 1:
                self._bar.set_postfix(best=f"{study.best_value:.4g}", refresh=False)
            else:
                self._bar.set_postfix(front=len(study.best_trials), refresh=False)
        except ValueError:  # no complete trial yet
            pass
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()

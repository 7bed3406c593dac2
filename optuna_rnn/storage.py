"""Storage URLs: one string names where a search lives, on one machine or many.

- ``sqlite:///optuna_rnn.db`` (the default): one file, no server. Several local processes
  may share it: trials last seconds to minutes, so writes are rare, and a 60 s busy timeout
  turns SQLite's file lock into a short wait instead of a "database is locked" error.
  The file is put in write-ahead-log mode (``journal_mode=WAL``, ``synchronous=NORMAL``):
  a commit is an append without an fsync (a power cut may lose the last commits, never the
  file; SQLite's write-ahead log needs every process on one machine).
- ``journal:PATH``: Optuna's append-only journal file, made for several processes on one
  machine (no heartbeats: a killed process leaves its trial RUNNING).
- ``postgresql://user:password@host/db`` (or ``mysql://...``): a server that workers on
  several machines share. ``pip install 'optuna-rnn[postgres]'`` installs the driver
  (psycopg 3, which SQLAlchemy 2.1 picks for a plain ``postgresql://``); a URL that
  names its driver (``postgresql+psycopg2://``) uses that one.

Every RDB storage gets heartbeats (``heartbeat_interval``, ``grace_period``) and a
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, so a trial whose worker died
is failed once its heartbeat is ``grace_period`` seconds old and run again as a new trial.
It comes in Optuna's trial cache, whose look for WAITING trials (every ``study.ask()``)
reads only the unfinished trials (:func:`optuna_rnn._optuna_compat.cached_sql_storage`).
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend

from optuna_rnn._optuna_compat import cached_sql_storage

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_STORAGE",
    "StorageError",
    "check_url",
    "open_storage",
    "redact",
    "study_names",
]

DEFAULT_STORAGE = "sqlite:///optuna_rnn.db"
DEFAULT_HEARTBEAT_INTERVAL = 60
DEFAULT_GRACE_PERIOD = 180
JOURNAL_PREFIX = "journal:"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
SQLITE_BUSY_TIMEOUT_S = 60


class StorageError(ValueError):
    """A storage that cannot be opened; the message names it and what to do."""


# What to install for a server URL whose driver is missing, by scheme.
_DRIVERS = {
    "postgresql": "pip install 'optuna-rnn[postgres]' (psycopg 3)",
    "postgres": "pip install 'optuna-rnn[postgres]' (psycopg 3)",
    "mysql": "pip install PyMySQL and write mysql+pymysql://...",
}


def check_url(url: str) -> str:
    """Return ``url`` if it names a storage this module opens, else raise ValueError."""
    if url.startswith(JOURNAL_PREFIX):
        if not url[len(JOURNAL_PREFIX) :]:
            raise ValueError(f"storage URL {url!r} names no journal file (journal:PATH)")
        return url
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in _RDB_SCHEMES:
        raise ValueError(
            f"storage URL {url!r} is not one of sqlite:///FILE, journal:FILE, "
            "postgresql://USER:PASSWORD@HOST/DB or mysql://..."
        )
    if scheme == "sqlite" and url.split("://", 1)[1] in ("", "/", "/:memory:"):
        raise ValueError(
            f"storage URL {url!r} names no file: an in-memory database is gone when the "
            "command ends and no worker can join it; write sqlite:///FILE"
        )
    return url


def open_storage(
    url: str = DEFAULT_STORAGE,
    *,
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL,
    grace_period: int = DEFAULT_GRACE_PERIOD,
    max_retry: int | None = 3,
) -> BaseStorage:
    """Open the storage that ``url`` names, with heartbeats and stale-trial retry for RDBs.

    ``max_retry`` bounds how often one trial is run again after its worker died
    (``None``: without bound). Each process opens its own storage: engines and file
    handles do not cross process boundaries.
    """
    check_url(url)
    if url.startswith(JOURNAL_PREFIX):
        path = url[len(JOURNAL_PREFIX) :]
        try:
            return JournalStorage(JournalFileBackend(path))
        except OSError as err:
            raise StorageError(
                f"cannot open the journal file {path}: {err.strerror or err} (does its folder exist?)"
            ) from None
    if grace_period <= heartbeat_interval:
        raise ValueError(
            f"grace_period ({grace_period} s) must exceed heartbeat_interval "
            f"({heartbeat_interval} s), or live trials would be failed as stale"
        )
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict = {"pool_pre_ping": True}
    if sqlite:
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    from sqlalchemy.exc import SQLAlchemyError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            storage = RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retry
                ),
            )
        except ImportError:
            scheme = url.split(":", 1)[0].split("+", 1)[0]
            raise StorageError(
                f"no database driver for {redact(url)}: {_DRIVERS.get(scheme, 'install its driver')}"
            ) from None
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:  # a bad database
            raise StorageError(f"cannot open the storage {redact(url)}: {_reason(err)}") from None
    if sqlite:
        _serialize_sqlite_transactions(storage.engine)
    return cached_sql_storage(storage)


def _reason(err: BaseException) -> str:
    """The database's own words for ``err`` (SQLAlchemy wraps them), on one line, with a
    hint for the usual SQLite faults."""
    cause = getattr(err, "orig", None) or err.__cause__ or err
    text = " ".join(str(cause).split()) or type(cause).__name__
    if "unable to open database file" in text:
        text += " (does its folder exist, and may this user write there?)"
    elif "file is not a database" in text:
        text += " (it is not an SQLite database: name another file)"
    return text


def _serialize_sqlite_transactions(engine: Any) -> None:
    """Make every SQLite transaction ``BEGIN IMMEDIATE`` (SQLAlchemy's documented recipe),
    on a write-ahead log.

    Optuna's row lock (``SELECT ... FOR UPDATE``) is a no-op in SQLite, and pysqlite
    starts a transaction only at the first write, so two processes could both read one
    WAITING trial and both run it. Taking the write lock at ``BEGIN`` makes that
    read-then-update atomic across processes; the busy timeout turns the wait into a
    short queue.

    The write-ahead log (``journal_mode=WAL``, a setting of the file that stays with it)
    with ``synchronous=NORMAL`` makes a commit an append without an fsync: every
    process on this machine still sees it at once, and a crashed process loses nothing;
    a power cut may lose the last commits but never corrupts the file. WAL needs the
    processes on one machine, which SQLite storages are for anyway.
    """
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections predate the listeners


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and printed messages."""
    if url.startswith(JOURNAL_PREFIX) or "@" not in url:
        return url
    import sqlalchemy.engine

    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def study_names(storage: BaseStorage) -> list[str]:
    """Names of the studies in ``storage``, oldest first."""
    return [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]

"""Where a study is written: any SQLAlchemy URL, opened as Optuna's RDB storage with heartbeats on.

- `resolve_url(spec, url)`: --storage, else the spec's `storage`, else sqlite:///studies/<name>.db.
- `open_storage(url, heartbeat)`: an `RDBStorage` with heartbeats and `RetryStaleTrial`, its schema created
  under `schema_lock`; StorageError (never a traceback, never a password) if it cannot be used.
- `schema_lock(url)`: held while tables are created, so processes starting at once on a new database do
  not race to create the same tables.
- `RetryStaleTrial`: re-enqueues a dead worker's trial with its params and identity but clean attrs.
- `slot_lock(storage, study_name)`: serialises "count trials, then ask" between workers (PostgreSQL
  advisory lock), so a study never runs past its target.

URL parsing, masking and read-only opening are the record layer's (scent_search/records/storage.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scent_search.errors import StorageError
from scent_search.records import CONSTRAINT_PREFIX, LEGACY_CONSTRAINTS_KEY, TrialRecord, safe_url, sqlite_file
from scent_search.db import engine_kwargs
from scent_search.records.storage import OPEN_ERRORS, open_error, parse_url
from scent_search.search.spec import HeartbeatSpec, StudySpec


def default_url(name: str) -> str:
    return f"sqlite:///studies/{name}.db"


def resolve_url(spec: StudySpec, url: str | None = None) -> str:
    return url or spec.storage or default_url(spec.name)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL: a dashboard or `report` reads while a run writes. synchronous=NORMAL: in WAL mode a commit no
    longer waits for an fsync (a trial writes ~60 small transactions); a power cut can lose the last commits,
    never the file's consistency."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _postgresql_settings(dbapi_connection: Any, connection_record: Any) -> None:
    """synchronous_commit=off: a commit no longer waits for the WAL to reach the disk (a trial writes ~20
    small transactions; each waited for an fsync). A server crash can lose the last few hundred ms of
    commits, never the database's consistency: the same trade as SQLite's synchronous=NORMAL above. A lost
    tell leaves a trial RUNNING, which its stopped heartbeat fails and retries. Set per connection: the
    server's default is left alone."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit TO OFF")
    cursor.close()
    dbapi_connection.commit()


@contextlib.contextmanager
def _advisory_lock(engine: sqlalchemy.Engine, name: str) -> Iterator[None]:
    """A PostgreSQL advisory lock named `name`, held by a transaction on its own connection (released when
    the transaction ends: two round trips instead of a session lock's four)."""
    digest = hashlib.blake2b(f"scent-search:{name}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)  # a stable signed 64-bit key
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        yield


def _make_folder(path: Path, url: str) -> None:
    """Create the folder of a new SQLite file, or say in one line why it cannot be: checked before anything
    is created, so a refused URL leaves no folder behind."""
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise StorageError(f"cannot open storage {safe_url(url)}: {str(existing)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot open storage {safe_url(url)}: cannot create folder {str(folder)!r}: "
                           f"{e.strerror or e}") from e


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Held while a process creates tables in the database at `url` (Optuna's, the profile cache's).

    Without it, two processes started at once on a new database both see no tables and both create them:
    one fails with "table studies already exists" or a duplicate alembic_version row. SQLite: an exclusive
    flock on the file's folder (no lock file is left behind). PostgreSQL: a session advisory lock.
    """
    path = sqlite_file(url)
    if path is not None:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
        return
    if parse_url(url).get_backend_name() != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    try:
        with _advisory_lock(engine, "schema"):
            yield
    finally:
        engine.dispose()


class RetryStaleTrial:
    """Heartbeat-stale callback: re-enqueue the dead worker's trial with the same params.

    Unlike Optuna's `RetryHeartbeatStaleTrialCallback`, the retry gets none of the `constraints` /
    `constraints:<key>` system attrs (`set_constraint` refuses to overwrite a value, so a copied one would
    silently stand in for the retry's own measurement) and of the user attrs only the identity ones
    (`TrialRecord.identity_attrs`: a repeat's `repeat_of` and `train_seed`), none that the dead trial
    measured. The retry bookkeeping (`failed_trial`, `retry_history`) is kept, in Optuna's format.
    """

    def __init__(self, max_retry: int | None = 2) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return
        clean = {k: v for k, v in trial.system_attrs.items()
                 if k != LEGACY_CONSTRAINTS_KEY and not k.startswith(CONSTRAINT_PREFIX)}
        clean["failed_trial"] = trial.system_attrs.get("failed_trial", trial.number)
        clean["retry_history"] = history
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            system_attrs=clean, user_attrs=TrialRecord.identity_attrs(trial.user_attrs)))


def open_storage(url: str, heartbeat: HeartbeatSpec | None = None) -> RDBStorage:
    """Optuna's RDB storage at `url`, heartbeats on when `heartbeat` is given; its tables are created if
    missing. A relative SQLite path is relative to the working directory; its folder is created.
    PostgreSQL needs the `postgres` extra (psycopg).
    """
    path = sqlite_file(url)
    if path is not None:
        _make_folder(path, url)
    hb: dict[str, Any] = {}
    if heartbeat is not None:
        hb = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace_period,
              "heartbeat_stale_trial_callback": RetryStaleTrial(heartbeat.max_retry)}
    try:
        with schema_lock(url), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            storage = RDBStorage(url, engine_kwargs=engine_kwargs(url), **hb)
    except OPEN_ERRORS as e:
        raise open_error(e, url) from e
    settings = _sqlite_pragmas if path is not None else \
        _postgresql_settings if storage.engine.dialect.name == "postgresql" else None
    if settings is not None:
        sqlalchemy.event.listen(storage.engine, "connect", settings)
        storage.engine.dispose()  # the connections Optuna opened to create its tables lack the settings
    return storage


@contextlib.contextmanager
def slot_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for a new one.

    PostgreSQL: a session advisory lock on its own connection, so workers on every machine queue here.
    Other backends run a single worker per study (SQLite: see workers.check_workers): no lock needed.
    """
    if storage.engine.dialect.name != "postgresql":
        yield
        return
    with _advisory_lock(storage.engine, f"slot:{study_name}"):
        yield

"""Where a study lives: any SQLAlchemy URL, opened as Optuna's RDB storage with heartbeats on.

- `resolve_url(spec, url)`: --storage, else the spec's `storage`, else sqlite:///studies/<name>.db.
- `open_storage(url, heartbeat)`: an `RDBStorage` with heartbeats and `RetryStaleTrial`; StorageError
  (never a traceback, never a password) if it cannot be used.
- `RetryStaleTrial`: re-enqueues a dead worker's trial with its params but clean attrs.
- `slot_lock(storage, study_name)`: serialises "count trials, then ask" between workers (PostgreSQL
  advisory lock), so a study never runs past its target.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scent_search.config import HeartbeatSpec, StudySpec
from scent_search.errors import ConfigError, StorageError

DEFAULT_STORAGE = "sqlite:///studies/default.db"  # DESIGN.md section 7: `run` with no spec stores here
CONSTRAINTS_KEY = "constraints"  # legacy list attr (optuna-dashboard 0.21); Optuna 5 writes "constraints:<key>"
SQLITE_BUSY_TIMEOUT_S = 60  # a dashboard reading the file must not make a worker fail on "database is locked"
PG_CONNECT_TIMEOUT_S = 10  # an unreachable host fails in seconds, not after the OS's TCP timeout


def default_url(name: str) -> str:
    return f"sqlite:///studies/{name}.db"


def resolve_url(spec: StudySpec, url: str | None = None) -> str:
    return url or spec.storage or default_url(spec.name)


def safe_url(url: str) -> str:
    """The URL with its password masked, for every message and log line."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparseable storage URL>"


def parse_url(url: str) -> sqlalchemy.engine.URL:
    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError as e:
        raise ConfigError("--storage", f"not a SQLAlchemy URL: {safe_url(url)}") from e


def is_sqlite(url: str) -> bool:
    return parse_url(url).get_backend_name() == "sqlite"


def _engine_kwargs(parsed: sqlalchemy.engine.URL) -> dict[str, Any]:
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if backend == "postgresql":
        # pre_ping: a worker that idled through a server restart reconnects instead of failing its trial.
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S}}
    return {"pool_pre_ping": True}


def _reason(e: BaseException, parsed: sqlalchemy.engine.URL) -> str:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    return reason


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL: a dashboard or `report` reads while a run writes. synchronous=NORMAL: in WAL mode a commit no
    longer waits for an fsync (a trial writes ~60 small transactions); a power cut can lose the last commits,
    never the file's consistency."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class RetryStaleTrial:
    """Heartbeat-stale callback: re-enqueue the dead worker's trial with the same params.

    Unlike Optuna's `RetryHeartbeatStaleTrialCallback`, the retry gets no user attrs and none of the
    `constraints` / `constraints:<key>` system attrs: `set_constraint` refuses to overwrite a value,
    so a copied one would silently stand in for the retry's own measurement. The retry bookkeeping
    (`failed_trial`, `retry_history`) is kept, in Optuna's format.
    """

    def __init__(self, max_retry: int | None = 2) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self.max_retry is not None and len(history) > self.max_retry:
            return
        clean = {k: v for k, v in trial.system_attrs.items()
                 if k != CONSTRAINTS_KEY and not k.startswith(CONSTRAINTS_KEY + ":")}
        clean["failed_trial"] = trial.system_attrs.get("failed_trial", trial.number)
        clean["retry_history"] = history
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            system_attrs=clean))


def open_storage(url: str, heartbeat: HeartbeatSpec | None = None, *, create_dirs: bool = True) -> RDBStorage:
    """Optuna's RDB storage at `url`, heartbeats on when `heartbeat` is given.

    A relative SQLite path is relative to the working directory; its folder is created. PostgreSQL needs
    the `postgres` extra (psycopg).
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and create_dirs:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    hb: dict[str, Any] = {}
    if heartbeat is not None:
        hb = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace_period,
              "heartbeat_stale_trial_callback": RetryStaleTrial(heartbeat.max_retry)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
            storage = RDBStorage(url, engine_kwargs=_engine_kwargs(parsed), **hb)
        if parsed.get_backend_name() == "sqlite":
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
            storage.engine.dispose()  # the connections Optuna opened to create its tables lack the pragmas
        return storage
    except ImportError as e:
        hint = " (install the postgres extra: pip install 'scent-search[postgres]')" \
            if parsed.get_backend_name() == "postgresql" else ""
        raise StorageError(f"cannot open storage {safe_url(url)}: missing driver {e.name or e}{hint}") from e
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, OSError) as e:
        raise StorageError(f"cannot open storage {safe_url(url)}: {_reason(e, parsed)}") from e


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a database failure in the block into a StorageError that names the (masked) URL."""
    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise StorageError(f"storage {safe_url(url)}: {_reason(e, parse_url(url))}") from e


def _lock_key(study_name: str) -> int:
    """A stable signed 64-bit advisory-lock key per study."""
    digest = hashlib.blake2b(f"scent-search:{study_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def slot_lock(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for a new one.

    PostgreSQL: a session advisory lock on its own connection, so workers on every machine queue here.
    Other backends run a single worker per study (SQLite: see workers.check_workers): no lock needed.
    """
    engine = storage.engine
    if engine.dialect.name != "postgresql":
        yield
        return
    key = _lock_key(study_name)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()

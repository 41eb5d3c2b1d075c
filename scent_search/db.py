"""SQLAlchemy engine settings for the study's database, shared by Optuna's storage and the memory-profile tables."""

from __future__ import annotations

from typing import Any

import sqlalchemy.engine

SQLITE_BUSY_TIMEOUT_S = 60  # a dashboard reading the file must not make a worker fail on "database is locked"
PG_CONNECT_TIMEOUT_S = 10  # an unreachable host fails in seconds, not after the OS's TCP timeout


def engine_kwargs(url: str | sqlalchemy.engine.URL) -> dict[str, Any]:
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if backend == "postgresql":
        # pre_ping: a worker that idled through a server restart reconnects instead of failing its trial.
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S}}
    return {"pool_pre_ping": True}

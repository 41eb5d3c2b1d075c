"""Opening a study's storage for reading, with domain errors instead of SQLAlchemy tracebacks.

The engine settings (SQLite busy timeout, PostgreSQL connect timeout) are the search service's, so a
report or the dashboard reading a study while workers write it waits for the lock instead of failing.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from scent_search.errors import ConfigError, StorageError
from scent_search.search.storage import DEFAULT_STORAGE


def open_storage(url: str | None) -> optuna.storages.RDBStorage:
    """The RDB storage at `url` (default: DEFAULT_STORAGE). Raises StorageError if it cannot be used,
    ConfigError if `url` is no SQLAlchemy URL. A SQLite file that does not exist is an error: a report
    must not create an empty database."""
    from scent_search.search.storage import open_storage as open_rdb, parse_url, safe_url

    url = url or DEFAULT_STORAGE
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise StorageError(f"storage {safe_url(url)}: no such SQLite file {parsed.database!r}")
    return open_rdb(url, create_dirs=False)


def load_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study `name` in `storage`; a ConfigError naming the known studies if there is none."""
    names = optuna.get_all_study_names(storage)
    if name not in names:
        known = ", ".join(repr(n) for n in names) if names else "none"
        raise ConfigError("STUDY", f"no study named {name!r} in the storage (known: {known})")
    return optuna.load_study(study_name=name, storage=storage)

"""Where studies live: storage URLs, their engine settings, and opening an existing storage to read it.

- `DEFAULT_STORAGE`: where `run` with no spec stores (docs/design.md, "Command line"), and every reader's default.
- `safe_url(url)`: the URL with its password masked, for every message and log line.
- `open_existing(url)`: Optuna's RDB storage at `url`, never creating anything: a SQLite file that does not
  exist, or a database without Optuna's tables, is a StorageError.
- `load_study(storage, name, url)`: the study, or a ConfigError naming the studies there are.
- `storage_errors(url)`: database failures in a block -> StorageError naming the (masked) URL.

Opening a storage to write (heartbeats, schema creation) is the search service's (search/storage.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import optuna
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.storages import RDBStorage

from scent_search.db import engine_kwargs
from scent_search.errors import ConfigError, StorageError

DEFAULT_STORAGE = "sqlite:///studies/default.db"  # docs/design.md, "Command line": `run` with no spec stores here


def safe_url(url: str) -> str:
    """The URL with its password masked."""
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


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (relative to the working directory); None for other backends and memory."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def reason(e: BaseException, url: str) -> str:
    """The first line of a driver's message, with the URL's password masked."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    password = parse_url(url).password
    return text.replace(str(password), "***") if password else text


def open_error(e: BaseException, url: str) -> StorageError:
    """The StorageError of a storage that could not be opened (a missing driver gets an install hint)."""
    if isinstance(e, ImportError):
        hint = " (install the postgres extra: pip install 'scent-search[postgres]')" \
            if parse_url(url).get_backend_name() == "postgresql" else ""
        return StorageError(f"cannot open storage {safe_url(url)}: missing driver {e.name or e}{hint}")
    # Optuna wraps a driver's error in StorageInternalError with a generic message: say the driver's.
    return StorageError(f"cannot open storage {safe_url(url)}: {reason(e.__cause__ or e, url)}")


# What opening an RDBStorage raises when the database cannot be used.
OPEN_ERRORS = (ImportError, sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError,
               ValueError, OSError)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a database failure in the block into a StorageError that names the (masked) URL."""
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"storage {safe_url(url)}: {reason(e.__cause__ or e, url)}") from e


def open_existing(url: str | None) -> RDBStorage:
    """The RDB storage at `url` (default DEFAULT_STORAGE) as it is: nothing is created, neither a SQLite file
    nor Optuna's tables. StorageError if it cannot be used; ConfigError if `url` is no SQLAlchemy URL."""
    url = url or DEFAULT_STORAGE
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise StorageError(f"storage {safe_url(url)}: no such SQLite file {str(path)!r}")
    try:
        return RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=True)
    except OPEN_ERRORS as e:
        raise open_error(e, url) from e


def load_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> optuna.Study:
    """The study `name`; a ConfigError naming the studies in the storage if there is none."""
    with storage_errors(url):
        names = optuna.get_all_study_names(storage)
        if name not in names:
            known = ", ".join(repr(n) for n in sorted(names)) or "none"
            raise ConfigError("STUDY", f"no study named {name!r} in {safe_url(url)} (known: {known})")
        return optuna.load_study(study_name=name, storage=storage)

"""Fixtures: a real SQLite storage file per test, and a study with trials of every status."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import optuna
import pytest

from tests.postgres import PG_URL, require_postgres
from tests.report.studies import make_study, random_trials


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"




@pytest.fixture
def pg_study_name() -> str:
    """A unique study name on the shared PostgreSQL, deleted afterwards."""
    name = f"report-test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=PG_URL)
    except KeyError:
        pass


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL on 127.0.0.1:5432; skipped only where it is unreachable and CI is not "true"."""
    return require_postgres()


@pytest.fixture(scope="session")
def _rich_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rich study written once (40 trials take seconds to insert on a busy 2-core machine)."""
    path = tmp_path_factory.mktemp("rich") / "studies.db"
    make_study(f"sqlite:///{path}", "rich", random_trials(40))
    return path


@pytest.fixture
def rich_study(_rich_db: Path, tmp_path: Path, storage_url: str) -> optuna.Study:
    """Study "rich" in this test's own copy of the storage file (at `storage_url`)."""
    shutil.copyfile(_rich_db, tmp_path / "studies.db")
    return optuna.load_study(study_name="rich", storage=storage_url)

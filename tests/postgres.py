"""The PostgreSQL the tests use (127.0.0.1:5432 here and in CI; SCENT_TEST_PG_URL overrides)."""

import os

import pytest
import sqlalchemy

PG_URL = os.environ.get("SCENT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """PG_URL when it answers. Otherwise the test fails under CI=true (PostgreSQL tests must run there)
    and is skipped elsewhere."""
    try:
        engine = sqlalchemy.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        reason = f"PostgreSQL at {PG_URL} is unreachable: {e}".splitlines()[0]
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    return PG_URL

"""Records fixtures: every test that takes ``engine`` or ``db_url`` runs on SQLite and on
PostgreSQL.

- ``postgres_database`` (session): a fresh, uniquely named database on the test server,
  dropped at the end. Skips with instructions when no server is reachable, unless
  ``TEST_POSTGRES_REQUIRED=1`` (CI), where a missing server fails the run instead of
  silently losing the PostgreSQL coverage.
- ``db_url`` (per test, parametrised ``sqlite`` / ``postgresql``): the URL of an empty
  database: a temporary SQLite file, or an empty schema in ``postgres_database``.
- ``engine`` (per test): ``store.db.create_engine(db_url)``, migrated to head.

The helpers live in ``store.testing`` so other test folders can build the same fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from store.db import create_engine, migrate
from store.testing import (
    ENABLE_POSTGRES_HINT,
    create_scratch_database,
    create_scratch_schema,
    drop_database,
    drop_schema,
    postgres_unavailable_reason,
)

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    reason = postgres_unavailable_reason()
    if reason is not None:
        message = f"PostgreSQL tests not run: {reason}; {ENABLE_POSTGRES_HINT}"
        if os.environ.get("TEST_POSTGRES_REQUIRED", "").strip() not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)
    url = create_scratch_database()
    yield url
    drop_database(url)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    url = create_scratch_schema(request.getfixturevalue("postgres_database"))
    yield url
    drop_schema(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()

"""Fixtures shared by every test folder.

- ``postgres_database`` (session): a fresh, uniquely named database on the test server,
  dropped at the end. Skips with instructions when no server is reachable, unless
  ``TEST_POSTGRES_REQUIRED=1`` (CI), where a missing server fails the run instead of
  silently losing the PostgreSQL coverage.
- ``db_url`` (per test, parametrised ``sqlite`` / ``postgresql``): the URL of an empty
  database: a temporary SQLite file, or an empty schema in ``postgres_database``.
- ``engine`` (per test): ``store.db.create_engine(db_url)``, migrated to head.
- ``prefect_api`` (session): a real Prefect API, started once, on PostgreSQL when the test
  server is reachable (``tests/prefect_harness.py`` says why), else on SQLite.
- ``demo_binaries`` (session): demo_vault v1 and v2 built from C (cached by source hash).

Under pytest-xdist (``make test`` runs ``-n 2``) every worker has its own PREFECT_HOME,
Prefect API server (on a free port) and scratch databases. Tests marked ``exclusive`` (and
``load``) start servers, worker processes, a browser or deliberate CPU load of their own:
they take one lock shared by the workers, so no two of them run at once and each keeps
the margins it was written with.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# Prefect reads these at import time: keep its files out of ~/.prefect and the checkout.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="runbooks-prefect-"))
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist workers never share a Prefect home (its memo and settings files are rewritten
    # in place), not even the one `make` exports for the checkout.
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix=f"runbooks-prefect-{worker}-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RUNBOOKS_PAUSE_POLL_SECONDS", "1")
# Tasks called outside a flow (tests of a single task) log locally only.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# ``db_url`` is a new, empty database each test: the records may create it (an explicit
# DATABASE_URL naming a missing database is refused otherwise; tests/test_bad_input.py
# unsets this to see the refusal).
os.environ.setdefault("RUNBOOKS_CREATE_DATABASE", "1")

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

# The lock the xdist workers of one run share (pytest-xdist gives each run its own id).
_EXCLUSIVE_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
_exclusive_lock: IO[str] | None = None


def _exclusive(item: pytest.Item | None) -> bool:
    return item is not None and any(item.get_closest_marker(m) for m in ("exclusive", "load"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Hold the shared lock around an exclusive test, its setup (module fixtures
    included) and teardown; kept while this worker's next test is exclusive too."""
    global _exclusive_lock
    if _EXCLUSIVE_RUN and _exclusive(item) and _exclusive_lock is None:
        path = Path(tempfile.gettempdir()) / f"runbooks-tests-{_EXCLUSIVE_RUN}.lock"
        _exclusive_lock = path.open("a")
        fcntl.flock(_exclusive_lock, fcntl.LOCK_EX)
    yield
    if _exclusive_lock is not None and not _exclusive(nextitem):
        fcntl.flock(_exclusive_lock, fcntl.LOCK_UN)
        _exclusive_lock.close()
        _exclusive_lock = None


def _postgres_required() -> bool:
    return os.environ.get("TEST_POSTGRES_REQUIRED", "").strip() not in ("", "0")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    reason = postgres_unavailable_reason()
    if reason is not None:
        message = f"PostgreSQL tests not run: {reason}; {ENABLE_POSTGRES_HINT}"
        if _postgres_required():
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


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from tests.prefect_harness import prefect_api as start

    with start(require_postgres=_postgres_required()):
        yield


@pytest.fixture(scope="session")
def demo_binaries() -> dict[str, bytes]:
    from runbooks.demo import demo_binaries as build

    return build()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()

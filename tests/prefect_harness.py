"""A real Prefect API for the tests, on PostgreSQL when the test server has one.

``prefect_test_harness`` always puts the API's database in a SQLite file. Under the
suite's load (a flow pausing while the server's event services flush) that file's write
lock was held for a minute and a pause never reached the server ("database is locked"),
so a correct flow failed its test. Production runs the Prefect server on PostgreSQL
(README: production); the tests do the same whenever PostgreSQL is reachable, and fall
back to the stock SQLite harness only where it is not (a laptop without PostgreSQL).
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import prefect.context
import prefect.settings
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api.server import SubprocessASGIServer
from prefect.testing.utilities import prefect_test_harness
from prefect.utilities.asyncutils import run_coro_as_sync
from sqlalchemy import make_url

from store.testing import (
    create_scratch_database,
    drop_database,
    postgres_available,
    postgres_unavailable_reason,
)

STARTUP_TIMEOUT_S = 120


def asyncpg_url(url: str) -> str:
    """The same database for Prefect's server, which speaks asyncpg; a Unix-socket host
    (``?host=/var/run/postgresql``) stays a query parameter asyncpg understands."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False)


@contextmanager
def prefect_api(require_postgres: bool = False) -> Iterator[str]:
    """Start a Prefect API server for this process; yields what its database is."""
    if not postgres_available():
        if require_postgres:
            raise RuntimeError(f"the Prefect API's PostgreSQL: {postgres_unavailable_reason()}")
        with prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_S):
            yield "sqlite"
        return
    database = create_scratch_database()
    try:
        with _server_on(asyncpg_url(database)):
            yield "postgresql"
    finally:
        drop_database(database)


@contextmanager
def _server_on(database_url: str) -> Iterator[None]:
    # What prefect_test_harness does, with the database URL ours to choose.
    from prefect.server.database.dependencies import temporary_database_interface

    with ExitStack() as stack:
        stack.enter_context(temporary_database_interface())
        stack.enter_context(
            prefect.settings.temporary_settings(
                updates={prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL: database_url}
            )
        )
        # Flows that look for "the" local server must find this one, not start another.
        prior = SubprocessASGIServer._instances.get(None)
        server = SubprocessASGIServer(port=_free_port())
        SubprocessASGIServer._instances[None] = server
        server.start(timeout=STARTUP_TIMEOUT_S)
        stack.enter_context(
            prefect.settings.temporary_settings(
                updates={prefect.settings.PREFECT_API_URL: server.api_url}
            )
        )
        stack.enter_context(
            prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()
            )
        )
        try:
            yield
        finally:
            run_coro_as_sync(_drain_workers())
            server.stop()
            if prior is not None:
                SubprocessASGIServer._instances[None] = prior
            else:
                SubprocessASGIServer._instances.pop(None, None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _drain_workers() -> None:
    # Logs and events still queued would hit a stopped server (and leak into the next).
    try:
        result = APILogWorker.instance().drain()
        if inspect.isawaitable(result):
            await result
    except RuntimeError:  # the worker never started
        pass
    result = EventsWorker.drain_all()
    if inspect.isawaitable(result):
        await result

"""Scratch PostgreSQL databases for tests (plain functions; no pytest import).

The test suites run the records on SQLite and on PostgreSQL. This module finds the
PostgreSQL server, creates a uniquely named database for a test session, gives each test
an empty schema inside it, and drops both afterwards. ``tests/store/conftest.py`` shows
the fixtures built on it; other test folders can build the same in a few lines.

The server is ``TEST_POSTGRES_URL`` when set (any database on the server: its host, port
and credentials are used, and the role needs CREATEDB), otherwise the local server
through its Unix socket as ``root`` (see ``ENABLE_POSTGRES_HINT`` for how to set that up).
"""

from __future__ import annotations

import os
import re
import secrets

import psycopg
from psycopg import sql
from sqlalchemy import URL, make_url

from core.settings import settings
from store.db import redacted

DEFAULT_SERVER_URL = "postgresql+psycopg://root@/postgres?host=/var/run/postgresql"
ENABLE_POSTGRES_HINT = (
    "to run the PostgreSQL variants, start a server and give root a role "
    "(`pg_ctlcluster $(ls /etc/postgresql) main start`, then "
    '`runuser -u postgres -- psql -c "CREATE ROLE root SUPERUSER LOGIN"`; `make test` in CI '
    "does this), or set TEST_POSTGRES_URL=postgresql+psycopg://user:pass@host/postgres "
    "for a role with CREATEDB"
)
CONNECT_TIMEOUT_S = 3
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def server_url() -> str:
    """The PostgreSQL server tests use: ``TEST_POSTGRES_URL`` or the local socket."""
    return settings().test_postgres_url or DEFAULT_SERVER_URL


def postgres_unavailable_reason(url: str | None = None) -> str | None:
    """Why the server cannot be used (None when it can), without any password in it."""
    target = url or server_url()
    try:
        with psycopg.connect(_conninfo(target, database="postgres"), autocommit=True) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "skip", and the reason says which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = make_url(target).password
        if password:
            first = first.replace(str(password), "***")
        return f"cannot connect to {redacted(target)}: {first}"
    return None


def postgres_available(url: str | None = None) -> bool:
    """True when the test PostgreSQL server accepts a connection."""
    return postgres_unavailable_reason(url) is None


def scratch_name(prefix: str = "runbooks_test") -> str:
    """A database or schema name unlikely to collide with a parallel test run."""
    return _checked_name(f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}")


def create_scratch_database(name: str | None = None, server: str | None = None) -> str:
    """Create an empty database on the test server; returns its SQLAlchemy URL."""
    name = _checked_name(name or scratch_name())
    target = server or server_url()
    with psycopg.connect(_conninfo(target, database="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _render(_sqlalchemy_url(target).set(database=name))


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, disconnecting whoever is still connected."""
    name = _checked_name(make_url(url).database or "")
    with psycopg.connect(_conninfo(url, database="postgres"), autocommit=True) as conn:
        # FORCE (PostgreSQL 13+): a pooled connection left open by a test must not keep
        # the database alive.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_scratch_schema(database_url: str, name: str | None = None) -> str:
    """Create an empty schema in a database; returns a URL whose connections use it.

    Cheaper than a database per test: the URL sets ``search_path`` to the schema, so
    tables, the Alembic version table and queries all land there.
    """
    name = _checked_name(name or scratch_name("t"))
    with psycopg.connect(_conninfo(database_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    url = _sqlalchemy_url(database_url).update_query_dict({"options": f"-csearch_path={name}"})
    return _render(url)


def drop_schema(url: str) -> None:
    """Drop the schema a ``create_scratch_schema`` URL points at, with everything in it."""
    options = make_url(url).query.get("options", "")
    match = re.fullmatch(r"-csearch_path=(\S+)", options if isinstance(options, str) else "")
    if match is None:
        raise ValueError(f"{redacted(url)} was not made by create_scratch_schema")
    name = _checked_name(match.group(1))
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _checked_name(name: str) -> str:
    # Names end up in DDL (quoted, but still): keep them to plain lowercase identifiers.
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain lowercase PostgreSQL identifier")
    return name


def _sqlalchemy_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _conninfo(url: str, database: str | None = None) -> str:
    """A libpq URI for psycopg from a SQLAlchemy URL (optionally another database)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    if "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    return _render(parsed)


__all__ = [
    "DEFAULT_SERVER_URL",
    "ENABLE_POSTGRES_HINT",
    "create_scratch_database",
    "create_scratch_schema",
    "drop_database",
    "drop_schema",
    "postgres_available",
    "postgres_unavailable_reason",
    "scratch_name",
    "server_url",
]

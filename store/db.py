"""Connecting to the records database, migrating it, and keeping its password out of sight.

SQLite is the default (a file under ``var/`` in the repository); PostgreSQL is used when
``DATABASE_URL`` says so (``postgresql+psycopg://user@host/db``). Every error that leaves
this package because the database refused or could not be reached is a ``RecordsError``
whose message names the database by its *redacted* URL and says what to check.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from core.errors import RecordsError
from core.secrets import scrub
from core.settings import settings

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH: Path = REPO_ROOT / "var" / "runbooks.db"
MIGRATIONS_DIR: Path = Path(__file__).resolve().parent / "migrations"

# Flows run tasks in threads and several runs can share the file: wait for the write lock
# rather than failing at once with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
# Without it an unreachable PostgreSQL host hangs a task for the OS TCP timeout (minutes).
POSTGRES_CONNECT_TIMEOUT_S = 10
# Serialises concurrent `migrate` calls on one PostgreSQL database (any constant bigint
# that no other code uses; this one spells "runbooks" in ASCII).
_MIGRATION_LOCK_KEY = 0x72756E626F6F6B73

_URL_HINT = "expected sqlite:///path/to/file.db or postgresql+psycopg://user@host/dbname"


CREATE_DATABASE_ENV = "RUNBOOKS_CREATE_DATABASE"
_CREATE_HINT = (
    f"check DATABASE_URL for a typo; to start a new records database there on purpose, "
    f"run once with {CREATE_DATABASE_ENV}=1"
)


def database_url() -> str:
    """The records database URL: ``DATABASE_URL``, else the SQLite file ``var/runbooks.db``.

    For the default file the parent directory is created, so a fresh checkout just works.
    An explicit ``DATABASE_URL`` naming a SQLite file that does not exist is refused
    unless ``RUNBOOKS_CREATE_DATABASE=1``: a typo would otherwise start an empty records
    database, in which a kill switch engaged in the real one is invisible.
    """
    current = settings()
    url = current.database_url
    if not url:
        url = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    elif not current.create_database:
        _refuse_missing_sqlite(_parse(url))
    _ensure_sqlite_parent(_parse(url))
    return url


def may_create_database() -> bool:
    """Whether this process may create and migrate a new records database: the default
    SQLite file, or ``RUNBOOKS_CREATE_DATABASE=1``."""
    current = settings()
    return not current.database_url or current.create_database


def require_records(engine: Engine) -> None:
    """Refuse a database that holds no records schema (never migrated): an explicit
    ``DATABASE_URL`` names an existing records database. Reads only."""
    if current_revision(engine) is None:
        raise RecordsError(
            f"DATABASE_URL names {redacted(engine.url)}, which holds no runbook records "
            f"(never migrated): {_CREATE_HINT}. Nothing was written."
        )


def _refuse_missing_sqlite(url: URL) -> None:
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    if not Path(database).expanduser().is_file():
        raise RecordsError(
            f"DATABASE_URL names the SQLite file {database}, which does not exist: "
            f"{_CREATE_HINT}. Nothing was created."
        )


def redacted(url: str | URL) -> str:
    """``url`` with its password hidden (``***``), safe for logs and error messages.

    Also hides a ``password=`` query parameter (libpq accepts one). Never raises: a string
    that does not parse as a URL is not echoed at all, since there is no telling which
    part of it is the password.
    """
    try:
        parsed = make_url(url)
    except Exception:
        return "<unparseable database URL>"
    if any(k.lower() == "password" for k in parsed.query):
        parsed = parsed.update_query_dict(
            {k: "***" for k in parsed.query if k.lower() == "password"}
        )
    return parsed.render_as_string(hide_password=True)


def create_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """An engine for the records database (``database_url()`` when ``url`` is None).

    SQLite: WAL journal (readers never block the writer), a busy timeout, foreign keys on,
    and every transaction opened with ``BEGIN IMMEDIATE``: the repository reads then writes
    in one transaction, and a deferred transaction that later needs the write lock fails
    with "database is locked" without waiting. ``postgresql://`` URLs get the psycopg 3
    driver (SQLAlchemy's default for that scheme, psycopg2, is not installed).
    PostgreSQL: ``pool_pre_ping`` so a connection dropped by a restart or a proxy is
    replaced instead of failing the next task, and a connect timeout.
    """
    parsed = _normalise(_parse(url if url is not None else database_url()))
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        _ensure_sqlite_parent(parsed)
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    elif backend == "postgresql":
        options["pool_pre_ping"] = True
        if "connect_timeout" not in parsed.query:
            options["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    options.update(kwargs)
    try:
        engine = sqlalchemy.create_engine(parsed, **options)
    except (ArgumentError, ImportError) as exc:
        raise RecordsError(
            f"cannot use the records database URL {redacted(parsed)}: "
            f"{_driver_error(exc, parsed)}; {_URL_HINT}. Set DATABASE_URL accordingly."
        ) from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


@contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turn driver errors into ``RecordsError`` naming the database by its redacted URL."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        # Connection-level failures: the driver's chained exception may carry connection
        # parameters, so it is not chained (``from None``); the message keeps what matters.
        raise RecordsError(
            f"the records database at {redacted(url)} is unreachable or refused the request "
            f"({_driver_error(exc, url)}). Check that DATABASE_URL points at a running server "
            "that accepts these credentials, and that the schema is migrated (store.db.migrate)."
        ) from None
    except DBAPIError as exc:
        raise RecordsError(
            f"the records database at {redacted(url)} refused a statement "
            f"({_driver_error(exc, url)}). The schema may be older than this code: run "
            "store.db.migrate; otherwise this is a bug in store.records."
        ) from exc


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit when the block ends, roll back if it raises.

    Objects stay loaded after the commit (``expire_on_commit=False``), but ``store.records``
    returns frozen records anyway; use this directly only for ad-hoc queries.
    """
    with translate_errors(engine.url):
        session = Session(engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except BaseException:
            # If the connection is gone, rollback fails too; the original error is the
            # one to report.
            with suppress(sqlalchemy.exc.SQLAlchemyError):
                session.rollback()
            raise
        finally:
            session.close()


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic ``Config`` for ``store/migrations``, built in code (there is no alembic.ini).

    For ``alembic`` commands by hand, e.g. a new revision::

        from alembic import command
        command.revision(alembic_config(url), message="...", autogenerate=True)
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_path_separator", "os")
    if url is not None:
        rendered = _normalise(_parse(url)).render_as_string(hide_password=False)
        # Config values go through ConfigParser interpolation: a URL-encoded password
        # ("%40") would otherwise be read as an interpolation.
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration revision(s) shipped with this code, joined by "+".

    Each runbook family (upgrades, migration and kill switch, scheduled operations) owns
    an Alembic branch of its own tables, so they evolve without ordering each other.
    """
    heads = sorted(ScriptDirectory.from_config(alembic_config()).get_heads())
    assert heads, "store/migrations/versions holds no revision"
    return "+".join(heads)


def current_revision(engine: Engine) -> str | None:
    """The revision(s) the database is at, joined by "+" as in ``head_revision``
    (None when it has never been migrated)."""
    with translate_errors(engine.url), engine.connect() as conn:
        heads = sorted(MigrationContext.configure(conn).get_current_heads())
    return "+".join(heads) or None


def migrate(url_or_engine: str | URL | Engine | None = None) -> str:
    """Upgrade the records database to the newest revision; returns that revision.

    Idempotent: an up-to-date database is left alone. Safe to run from several processes
    at once (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``), so every flow may
    call it at start-up.
    """
    if isinstance(url_or_engine, Engine):
        engine, owned = url_or_engine, False
    else:
        engine, owned = create_engine(url_or_engine), True
    try:
        with translate_errors(engine.url), engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
        return head_revision()
    finally:
        if owned:
            engine.dispose()


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        # ValueError: a non-numeric port. Neither message is echoed: it may hold the URL.
        raise RecordsError(
            f"the records database URL does not parse ({redacted(url)}); {_URL_HINT}. "
            "Set DATABASE_URL accordingly."
        ) from None


def _normalise(url: URL) -> URL:
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _ensure_sqlite_parent(url: URL) -> None:
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN itself (below): the sqlite3 module's own transaction
        # handling skips BEGIN before SELECT and DDL, which breaks read-then-write logic.
        dbapi_conn.isolation_level = None  # type: ignore[attr-defined]
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            _enable_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sqlalchemy.Connection) -> None:
        # Take the write lock up front (waiting up to busy_timeout): two transactions that
        # both read and then write are serialised instead of one failing mid-way.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_wal(cursor: Any) -> None:
    # WAL is a property of the file and persists: usually there is nothing to do.
    if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() in ("wal", "memory"):
        return
    # Switching needs an exclusive lock, and SQLite answers "database is locked" at once,
    # without its busy handler, when another connection is opening the same new file.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _driver_error(exc: BaseException, url: str | URL) -> str:
    """First line of the driver's message, with the URL's password removed if it appears."""
    orig = getattr(exc, "orig", None) or exc
    message = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return f"{type(orig).__name__}: {scrub(message, password)}"


__all__ = [
    "CREATE_DATABASE_ENV",
    "DEFAULT_SQLITE_PATH",
    "MIGRATIONS_DIR",
    "REPO_ROOT",
    "alembic_config",
    "create_engine",
    "current_revision",
    "database_url",
    "head_revision",
    "may_create_database",
    "migrate",
    "redacted",
    "require_records",
    "session_scope",
    "translate_errors",
]

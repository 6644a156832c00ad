"""Engine, migrations and URL handling of the records database, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import traceback
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from core.errors import InputError, RecordsError
from store.db import (
    DEFAULT_SQLITE_PATH,
    alembic_config,
    create_engine,
    current_revision,
    database_url,
    head_revision,
    migrate,
    redacted,
    session_scope,
)
from store.models import AuditEvent, Base
from store.records import audit
from store.records import proposals as proposals_records

# Tracebacks show source lines: keep the password out of the lines that raise.
SECRET = "hunter2"
UNREACHABLE_URL = f"postgresql+psycopg://ops:{SECRET}@127.0.0.1:1/records?connect_timeout=2"
TABLES = {"proposals", "approvals", "executions", "audit_events", "program_hashes"}


def test_migrate_twice_is_idempotent(db_url: str) -> None:
    assert migrate(db_url) == head_revision()
    assert migrate(db_url) == head_revision()
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        # Migrating again through an engine that already holds data changes nothing.
        audit.audit(engine, "test", "noop", "subject")
        migrate(engine)
        assert len(audit.audit_events(engine)) == 1
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    migrate(db_url)
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "base")
    engine = create_engine(db_url)
    try:
        assert not TABLES & set(sa.inspect(engine).get_table_names())
        assert migrate(engine) == head_revision()
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_unmigrated_database_has_no_revision(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) is None
        with pytest.raises(RecordsError, match=r"store\.db\.migrate"):
            proposals_records.get_proposal(engine, 1)
    finally:
        engine.dispose()


def test_models_match_migrations(engine: Engine) -> None:
    # A model change without a migration (or the reverse) shows up here as a diff.
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_concurrent_migrate_runs_once(db_url: str) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            migrate(db_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_partial_unique_index_exists(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in sa.inspect(engine).get_indexes("approvals")}
    guard = indexes["uq_approvals_accepted_member"]
    assert guard["unique"]
    assert guard["column_names"] == ["proposal_id", "member"]


def test_session_scope_commits_and_rolls_back(engine: Engine) -> None:
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        session.add(AuditEvent(at=now, actor="a", action="kept", subject="s", details={}))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        session.add(AuditEvent(at=now, actor="a", action="dropped", subject="s", details={}))
        session.flush()
        raise RuntimeError("abort")
    assert [e.action for e in audit.audit_events(engine, "s")] == ["kept"]


def test_datetimes_come_back_aware_utc(engine: Engine) -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    event = audit.audit(engine, "a", "x", "s", at=at)
    (stored,) = audit.audit_events(engine, "s")
    assert stored.at == at
    assert stored.at.tzinfo is UTC
    assert stored.at.hour == 12
    assert event.at == stored.at


def test_datetimes_ignore_the_postgresql_session_timezone(db_url: str) -> None:
    engine = create_engine(db_url)

    @sa.event.listens_for(engine, "connect")
    def _tokyo(dbapi_conn: Any, _record: Any) -> None:
        if engine.dialect.name == "postgresql":
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'Asia/Tokyo'")

    try:
        migrate(engine)
        at = datetime(2025, 3, 1, 23, 59, tzinfo=UTC)
        audit.audit(engine, "a", "x", "s", at=at)
        (stored,) = audit.audit_events(engine, "s")
        assert stored.at == at and stored.at.tzinfo is UTC and stored.at.day == 1
    finally:
        engine.dispose()


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    with pytest.raises(InputError, match="no timezone"):
        audit.audit(engine, "a", "x", "s", at=datetime(2025, 1, 1))
    assert audit.audit_events(engine) == []


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'r.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15_000
    finally:
        engine.dispose()
    assert (tmp_path / "deep" / "dir").is_dir()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with pytest.raises(RecordsError, match="no proposal 999"):
        proposals_records.record_approval(
            engine, 999, member="m", decision="approve", accepted=True
        )
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO executions (proposal_id, outcome, created_at) "
                "VALUES (999, 'failed', '2025-01-01 00:00:00')"
            )
        )


def test_database_url_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "runbooks.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{target}")
    assert database_url() == f"sqlite:///{target}"
    assert target.parent.is_dir()


def test_database_url_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{DEFAULT_SQLITE_PATH}"
    assert DEFAULT_SQLITE_PATH.parent.is_dir()


def test_plain_postgresql_scheme_uses_psycopg() -> None:
    engine = create_engine("postgresql://someone@db.example/records")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://ops:hunter2@db.example:5432/records",
            "postgresql+psycopg://ops:***@db.example:5432/records",
        ),
        (
            "postgresql+psycopg://ops:p%40ss%3Aw0rd@db.example/records",
            "postgresql+psycopg://ops:***@db.example/records",
        ),
        (
            "postgresql+psycopg://ops@db.example/records?password=hunter2&sslmode=require",
            "postgresql+psycopg://ops@db.example/records?password=%2A%2A%2A&sslmode=require",
        ),
        ("sqlite:////var/lib/runbooks.db", "sqlite:////var/lib/runbooks.db"),
        ("weird://ops:hunter2@host/db with spaces", "weird://ops:***@host/db with spaces"),
        # Unparseable: no telling where the password is, so nothing is echoed.
        ("postgresql+psycopg//ops:hunter2@host/records", "<unparseable database URL>"),
        ("::not-a-url:hunter2", "<unparseable database URL>"),
    ],
)
def test_redacted_hides_password(url: str, expected: str) -> None:
    shown = redacted(url)
    assert shown == expected
    assert "hunter2" not in shown
    assert "p@ss" not in shown and "p%40ss" not in shown


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_unreachable_server_gives_records_error_without_password() -> None:
    engine = create_engine(UNREACHABLE_URL)
    try:
        with pytest.raises(RecordsError) as caught:
            proposals_records.get_proposal(engine, 1)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert SECRET not in _full_text(caught.value)
    assert "postgresql+psycopg://ops:***@127.0.0.1:1/records" in message
    assert "DATABASE_URL" in message


def test_migrate_on_bad_url_gives_records_error_without_password() -> None:
    with pytest.raises(RecordsError) as caught:
        migrate(UNREACHABLE_URL)
    assert SECRET not in _full_text(caught.value)
    assert "ops:***@" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "nosuchdb://ops:hunter2@host/records",
        "postgresql+nosuchdriver://ops:hunter2@host/records",
        "::not-a-url:hunter2",
        "postgresql+psycopg//ops:hunter2@host/records",
        "postgresql+psycopg://ops:hunter2@host:notaport/records",
    ],
)
def test_unusable_url_gives_records_error_without_password(url: str) -> None:
    with pytest.raises(RecordsError) as caught:
        create_engine(url)
    assert SECRET not in _full_text(caught.value)
    assert "DATABASE_URL" in str(caught.value)

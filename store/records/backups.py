"""Records of the backup runbook: each backup set once it was checked, and its removal by
retention (the sets themselves: ``store.backup``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from store.db import session_scope
from store.models import BACKUP_STATUSES, Backup
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _aware,
    _choice,
    _sha256_hex,
    _text,
    _write_audit,
    insert_once,
)


class BackupRecord(Record):
    id: int
    name: str
    directory: str
    created_at: datetime
    backend: str
    records_file: str
    records_sha256: str
    table_counts: dict[str, int]
    programs: dict[str, Any]
    status: str
    detail: str | None
    verified_at: datetime | None
    removed_at: datetime | None


def backup_subject(name: str) -> str:
    """The audit ``subject`` of a backup set."""
    return f"backup:{name}"


def record_backup(
    engine: Engine,
    *,
    name: str,
    directory: str,
    backend: str,
    records_file: str,
    records_sha256: str,
    table_counts: Mapping[str, int],
    programs: Mapping[str, Any],
    status: str,
    detail: str | None = None,
    created_at: datetime | None = None,
    verified_at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> BackupRecord:
    """Record a backup set once it was checked; idempotent per ``name``.

    Audit: ``backup.verified`` or ``backup.failed``.
    """
    name = _text("name", name)
    status = _choice("status", status, BACKUP_STATUSES[:2])
    digest = _sha256_hex("records_sha256", records_sha256)
    created = _aware("created_at", created_at)
    return insert_once(
        engine,
        BackupRecord,
        find=lambda session: session.scalar(select(Backup).where(Backup.name == name)),
        new=lambda: Backup(
            name=name,
            directory=_text("directory", directory),
            created_at=created,
            backend=_text("backend", backend),
            records_file=_text("records_file", records_file),
            records_sha256=digest,
            table_counts=dict(table_counts),
            programs=dict(programs),
            status=status,
            detail=detail,
            verified_at=None if verified_at is None else _aware("verified_at", verified_at),
            flow_run_id=flow_run_id,
        ),
        audit=lambda row: {
            "actor": actor,
            "action": f"backup.{status}",
            "subject": backup_subject(name),
            "details": {
                "backup_id": row.id,
                "backend": row.backend,
                "records_sha256": digest,
                "tables": dict(table_counts),
                "programs": sorted(programs),
                "detail": detail,
            },
            "flow_run_id": flow_run_id,
        },
        what=f"backup {name}",
    )


def mark_backup_removed(
    engine: Engine,
    name: str,
    *,
    reason: str,
    at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> BackupRecord | None:
    """Record that retention deleted a backup set; idempotent. None if never recorded.

    Audit: ``backup.removed``.
    """
    when = _aware("at", at)
    with session_scope(engine) as session:
        row = session.scalar(select(Backup).where(Backup.name == name).with_for_update())
        if row is None:
            return None
        if row.removed_at is None:
            previous = row.status
            row.status, row.removed_at = "removed", when
            _write_audit(
                session,
                actor=actor,
                action="backup.removed",
                subject=backup_subject(name),
                details={"reason": reason, "was": previous},
                flow_run_id=flow_run_id,
                at=when,
            )
        return BackupRecord.model_validate(row)


def backups(engine: Engine, status: str | None = None) -> list[BackupRecord]:
    """Recorded backup sets, newest first."""
    query = select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
    if status is not None:
        query = query.where(Backup.status == _choice("status", status, BACKUP_STATUSES))
    with session_scope(engine) as session:
        return [BackupRecord.model_validate(b) for b in session.scalars(query).all()]

"""The audit log: rows for what changed no other record (a check, a notice), and the
log as written."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from store.db import session_scope
from store.models import AuditEvent
from store.records._base import Record, _aware, _text, _write_audit


class AuditRecord(Record):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    flow_run_id: str | None


def audit(
    engine: Engine,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
    *,
    at: datetime | None = None,
) -> AuditRecord:
    """Append an audit row for something that changed no other record (a check, a notice).

    ``details`` must be JSON-serialisable (``InputError`` otherwise).
    """
    with session_scope(engine) as session:
        event = _write_audit(
            session,
            actor=_text("actor", actor),
            action=_text("action", action),
            subject=_text("subject", subject),
            details=details,
            flow_run_id=flow_run_id,
            at=_aware("at", at),
        )
        return AuditRecord.model_validate(event)


def audit_events(
    engine: Engine,
    subject: str | None = None,
    *,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Audit rows in the order they were written, optionally for one subject / action.

    ``limit`` keeps the newest ``limit`` rows (still oldest first).
    """
    query = select(AuditEvent)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with session_scope(engine) as session:
        if limit is None:
            rows = session.scalars(query.order_by(AuditEvent.id)).all()
        else:
            newest = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
            rows = list(reversed(newest))
        return [AuditRecord.model_validate(row) for row in rows]

"""The audit log (Alembic ``0001``): one append-only row per change, in the change's
own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow


class AuditEvent(Audited, Base):
    """An append-only log line: who did what to which subject, and from which flow run."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)

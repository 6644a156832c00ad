"""Records of the housekeeping runbook (Alembic branch ``operations``): rows moved out of
live tables, kept as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow


class ArchivedRecord(Audited, Base):
    """A row moved out of a live table by housekeeping, kept as JSON."""

    __tablename__ = "archived_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_table: Mapped[str] = mapped_column(String, index=True)
    # The row's primary key, rendered as text (composite keys joined by "|").
    source_key: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)

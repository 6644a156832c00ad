"""Records of the backup runbook (Alembic branch ``operations``): one row per backup set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

BACKUP_STATUSES: tuple[str, ...] = ("verified", "failed", "removed")


class Backup(Audited, Base):
    """A backup set: the records database dump and the program binaries, with hashes."""

    __tablename__ = "backups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    directory: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    backend: Mapped[str] = mapped_column(String)
    records_file: Mapped[str] = mapped_column(String)
    records_sha256: Mapped[str] = mapped_column(String)
    # Row count per table, as restored into a scratch database.
    table_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    # program id -> {"sha256": file hash, "verifiable_sha256": ..., "slot": ...}
    programs: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String, index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]

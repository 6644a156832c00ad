"""Records of the scheduled operations: health reports, backups, the key registry and
key rotations, and rows archived by housekeeping.

Same conventions as ``store.models`` (whose ``Base`` these share): portable across SQLite
and PostgreSQL, aware UTC datetimes, closed vocabularies checked by the repository
(``store.operations_records``) rather than by CHECK constraints. The tables belong to the
``operations`` Alembic branch (``store/migrations/versions/0003_operations.py``).

Rows here never hold a foreign key to ``proposals``: housekeeping removes executed
proposals after 90 days, and the rotation history must outlive them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base, utcnow

HEALTH_LEVELS: tuple[str, ...] = ("info", "warning", "critical")
KEY_ROLES: tuple[str, ...] = ("upgrade", "governance", "emergency")
BACKUP_STATUSES: tuple[str, ...] = ("verified", "failed", "removed")


class HealthReport(Base):
    """One daily health run: its worst level and every finding."""

    __tablename__ = "health_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    level: Mapped[str] = mapped_column(String)
    # The slot the cluster reported (None when the RPC was unreachable).
    slot: Mapped[int | None] = mapped_column(BigInteger)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # A retried "record report" task finds the row its run already wrote.
    flow_run_id: Mapped[str | None] = mapped_column(String, unique=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String)
    acknowledged_at: Mapped[datetime | None]


class ManagedKey(Base):
    """A key the team must rotate: its role, what it controls, and since when it serves."""

    __tablename__ = "managed_keys"
    __table_args__ = (UniqueConstraint("cluster", "pubkey"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String)
    pubkey: Mapped[str] = mapped_column(String)
    role: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String)
    # Program ids this key is the upgrade authority of (upgrade keys).
    programs: Mapped[list[str]] = mapped_column(JSON)
    # When the key took over; its rotation is due a role-dependent interval later.
    rotated_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String)


class KeyRotation(Base):
    """One transfer of a program's upgrade authority (``new_authority`` None: immutable)."""

    __tablename__ = "key_rotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String)
    program_id: Mapped[str] = mapped_column(String, index=True)
    role: Mapped[str] = mapped_column(String)
    old_authority: Mapped[str] = mapped_column(String)
    new_authority: Mapped[str | None] = mapped_column(String)
    # The sign-off proposal; no foreign key (see the module docstring). Unique: a
    # retried "record rotation" task returns the row it wrote.
    proposal_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    # None when nothing was sent because the chain already had the change.
    signature: Mapped[str | None] = mapped_column(String)
    slot: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String)


class Backup(Base):
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
    flow_run_id: Mapped[str | None] = mapped_column(String)


class ArchivedRecord(Base):
    """A row moved out of a live table by housekeeping, kept as JSON."""

    __tablename__ = "archived_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_table: Mapped[str] = mapped_column(String, index=True)
    # The row's primary key, rendered as text (composite keys joined by "|").
    source_key: Mapped[str] = mapped_column(String)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String)


__all__ = [
    "BACKUP_STATUSES",
    "HEALTH_LEVELS",
    "KEY_ROLES",
    "ArchivedRecord",
    "Backup",
    "HealthReport",
    "KeyRotation",
    "ManagedKey",
]

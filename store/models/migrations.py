"""Records of the account-migration runbook (Alembic branch ``migration``).

- ``migration_runs``: one account migration of one program (a rerun resumes it).
- ``migration_accounts``: every account it touches, with its pre-migration snapshot and
  its status; the checkpoint a crashed run resumes from (the chain stays the truth).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

MIGRATION_STATUSES: tuple[str, ...] = ("running", "completed", "incomplete", "failed")


# pending: snapshot taken, migration not seen on chain yet; migrated: the chain holds the
# new layout; verified: it matches the snapshot; failed: see ``error``.
ACCOUNT_STATUSES: tuple[str, ...] = ("pending", "migrated", "verified", "failed")


class MigrationRun(Audited, Base):
    """One migration of a program's accounts from one layout version to another."""

    __tablename__ = "migration_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Computed by the flow from cluster, program and migrator: a rerun finds the same row.
    key: Mapped[str] = mapped_column(String, unique=True)
    cluster: Mapped[str] = mapped_column(String)
    program_id: Mapped[str] = mapped_column(String, index=True)
    migrator: Mapped[str] = mapped_column(String)
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    # The binary that wrote the new layout: a rollback to any other binary is checked.
    program_hash: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class MigrationAccount(Base):
    """One account of a migration: its data before, and what became of it."""

    __tablename__ = "migration_accounts"
    __table_args__ = (
        UniqueConstraint("migration_id", "address"),
        Index("ix_migration_accounts_migration_id_status", "migration_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[int] = mapped_column(ForeignKey("migration_runs.id"))
    address: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    from_version: Mapped[int] = mapped_column(Integer)
    # The account data as read before anything was sent: what verification compares with.
    snapshot: Mapped[bytes] = mapped_column(LargeBinary)
    snapshot_sha256: Mapped[str] = mapped_column(String)
    # Migrate transactions sent for it (a retry-failed run adds one).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # None when the chain already held the new layout (nothing was sent for it).
    signature: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    migrated_at: Mapped[datetime | None]
    verified_at: Mapped[datetime | None]

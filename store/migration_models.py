"""Records of the migration, rollback and kill-switch runbooks (Alembic branch ``migration``).

Same conventions as ``store.models`` (shared ``Base``, UTC datetimes, vocabularies checked
by the repository ``store.migration_records`` rather than CHECK constraints):

- ``migration_runs``: one account migration of one program (a rerun resumes it).
- ``migration_accounts``: every account it touches, with its pre-migration snapshot and
  its status; the checkpoint a crashed run resumes from (the chain stays the truth).
- ``program_archives``: the binaries replaced by upgrades, kept to roll back to.
- ``kill_switches``: whether runbooks may write to a program (or a whole cluster).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models import Base, utcnow

MIGRATION_STATUSES: tuple[str, ...] = ("running", "completed", "incomplete", "failed")
# pending: snapshot taken, migration not seen on chain yet; migrated: the chain holds the
# new layout; verified: it matches the snapshot; failed: see ``error``.
ACCOUNT_STATUSES: tuple[str, ...] = ("pending", "migrated", "verified", "failed")
# The kill switch of every program of a cluster.
ALL_PROGRAMS = "*"


class MigrationRun(Base):
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
    flow_run_id: Mapped[str | None] = mapped_column(String)


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


class ProgramArchive(Base):
    """A program binary as it was on chain before an upgrade replaced it."""

    __tablename__ = "program_archives"
    __table_args__ = (UniqueConstraint("cluster", "program_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String)
    program_id: Mapped[str] = mapped_column(String)
    # Verifiable-build hash (solana-verify) of ``data``, equal to the ProgramData's.
    sha256: Mapped[str] = mapped_column(String)
    # The ELF as the ProgramData held it (its zero padding cut): what a buffer needs.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    # ProgramData slot and upgrade authority when it was archived.
    slot: Mapped[int] = mapped_column(BigInteger)
    authority: Mapped[str | None] = mapped_column(String)
    archived_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Archived again before a later upgrade: the newest time decides the rollback default.
    last_archived_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The upgrade proposal it was archived for (no foreign key: housekeeping removes old
    # proposals, and the archive must outlive them).
    proposal_id: Mapped[int | None] = mapped_column(Integer)
    flow_run_id: Mapped[str | None] = mapped_column(String)


class KillSwitch(Base):
    """Whether runbooks may write to a program (``program_id`` ``*``: the whole cluster).

    Its history is in ``audit_events`` (subject ``kill-switch:<cluster>:<program>``).
    """

    __tablename__ = "kill_switches"

    cluster: Mapped[str] = mapped_column(String, primary_key=True)
    program_id: Mapped[str] = mapped_column(String, primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The signed-off proposal (kind ``kill-switch-release``) that last released it; no
    # foreign key, as for archives.
    release_proposal_id: Mapped[int | None] = mapped_column(Integer)
    flow_run_id: Mapped[str | None] = mapped_column(String)


__all__ = [
    "ACCOUNT_STATUSES",
    "ALL_PROGRAMS",
    "MIGRATION_STATUSES",
    "KillSwitch",
    "MigrationAccount",
    "MigrationRun",
    "ProgramArchive",
]

"""Records of the rollback runbook (Alembic branch ``migration``): ``program_archives``,
the binaries replaced by upgrades, kept to roll back to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow


class ProgramArchive(Audited, Base):
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

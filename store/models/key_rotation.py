"""Records of the key-rotation runbook (Alembic branch ``operations``): the key registry
and the authority transfers.

Rows here never hold a foreign key to ``proposals``: housekeeping removes executed
proposals after 90 days, and the rotation history must outlive them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

KEY_ROLES: tuple[str, ...] = ("upgrade", "governance", "emergency")


class ManagedKey(Audited, Base):
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


class KeyRotation(Audited, Base):
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

"""The write-ahead journal of chain writes: each signed transaction's signature is
recorded before it is first sent, then settled (landed, failed, expired, refused).

After a killed run the journal still names every transaction that may have landed, so a
rerun settles them before it signs anything new, and an execution row can name the real
transaction (``purpose`` ties a row to what it was for, e.g. ``execute:proposal:12``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

TRANSACTION_STATUSES = ("sent", "landed", "failed", "expired", "refused")


class ChainTransaction(Audited, Base):
    __tablename__ = "chain_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature: Mapped[str] = mapped_column(String(88), unique=True)
    purpose: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="sent")
    # The signed wire bytes (base64): a rerun resends them while they may still land.
    # Signed transactions are public once sent; no key material is in them.
    wire: Mapped[str] = mapped_column(Text)
    last_valid_block_height: Mapped[int] = mapped_column(BigInteger)
    # What the caller knew when it signed (e.g. the program's hash before an upgrade).
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column()

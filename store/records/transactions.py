"""The write-ahead journal of chain writes (``chain_transactions``).

``write_ahead`` records signed transactions before they are first sent (one statement
for a whole batch); ``settle`` records what became of each; ``unsettled`` and
``transactions`` read them back by purpose. ``programs.send`` decides when; this module
only keeps the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, bindparam, insert, select, update

from core.errors import InputError
from store.db import session_scope
from store.models import TRANSACTION_STATUSES, ChainTransaction, utcnow
from store.records._base import Record, _choice, _text


class SignedTransaction(Protocol):
    """What a signed transaction must tell the journal (``programs.send.Signed``)."""

    @property
    def signature(self) -> str: ...
    @property
    def wire(self) -> str: ...
    @property
    def last_valid_block_height(self) -> int: ...


class TransactionRecord(Record):
    id: int
    signature: str
    purpose: str
    status: str
    wire: str
    last_valid_block_height: int
    details: dict[str, Any] | None
    error: str | None
    sent_at: datetime
    settled_at: datetime | None
    flow_run_id: str | None


def write_ahead(
    engine: Engine,
    purpose: str,
    signed: Sequence[SignedTransaction],
    *,
    details: Mapping[str, Any] | None = None,
    details_each: Sequence[Mapping[str, Any]] | None = None,
    flow_run_id: str | None = None,
) -> None:
    """Record ``signed`` as sent, in one statement, before any of them is sent.

    ``details`` go with every row; ``details_each`` (one per item of ``signed``, in order)
    with each row of its own, e.g. the accounts a transaction of a batch covers."""
    purpose = _text("purpose", purpose)
    if len(purpose) > 200:
        raise InputError(f"purpose {purpose[:40]!r}... is longer than 200 characters")
    if details is not None and details_each is not None:
        raise InputError("write_ahead takes details or details_each, not both")
    if details_each is not None and len(details_each) != len(signed):
        raise InputError(
            f"details_each has {len(details_each)} entries for {len(signed)} transactions"
        )
    if not signed:
        return
    each = (
        [dict(d) for d in details_each]
        if details_each is not None
        else [dict(details) if details is not None else None] * len(signed)
    )
    now = utcnow()
    rows = [
        {
            "signature": item.signature,
            "purpose": purpose,
            "status": "sent",
            "wire": item.wire,
            "last_valid_block_height": item.last_valid_block_height,
            "details": row_details,
            "sent_at": now,
            "flow_run_id": flow_run_id,
        }
        for item, row_details in zip(signed, each, strict=True)
    ]
    with session_scope(engine) as session:
        session.execute(insert(ChainTransaction), rows)


def settle(engine: Engine, signature: str, status: str, error: str | None = None) -> None:
    """Record what became of ``signature``; a row is settled once (a later call for the
    same signature, from a racing or retried attempt, changes nothing)."""
    status = _choice("status", status, TRANSACTION_STATUSES[1:])
    with session_scope(engine) as session:
        session.execute(
            update(ChainTransaction)
            .where(ChainTransaction.signature == signature)
            .where(ChainTransaction.status == "sent")
            .values(status=status, error=error, settled_at=utcnow())
        )


def settle_many(engine: Engine, settlements: Sequence[tuple[str, str, str | None]]) -> None:
    """``settle`` for many (signature, status, error) at once: one UPDATE for the landed
    ones (they carry no error), one executemany for the rest, in one transaction."""
    landed: list[str] = []
    others: list[dict[str, Any]] = []
    for signature, status, error in settlements:
        status = _choice("status", status, TRANSACTION_STATUSES[1:])
        if status == "landed" and error is None:
            landed.append(signature)
        else:
            others.append({"sig": signature, "new_status": status, "new_error": error})
    if not landed and not others:
        return
    now = utcnow()
    with session_scope(engine) as session:
        if landed:
            session.execute(
                update(ChainTransaction)
                .where(ChainTransaction.signature.in_(landed))
                .where(ChainTransaction.status == "sent")
                .values(status="landed", error=None, settled_at=now)
            )
        if others:
            for row in others:
                row["now"] = now
            session.connection().execute(_SETTLE_ONE, others)


_SETTLE_ONE = (
    update(ChainTransaction)
    .where(ChainTransaction.signature == bindparam("sig"))
    .where(ChainTransaction.status == "sent")
    .values(
        status=bindparam("new_status"), error=bindparam("new_error"), settled_at=bindparam("now")
    )
)


def unsettled(engine: Engine, purpose: str) -> list[TransactionRecord]:
    """Transactions of ``purpose`` sent (or about to be) and never settled, oldest first."""
    return _select(engine, purpose, only_unsettled=True)


def transactions(engine: Engine, purpose: str) -> list[TransactionRecord]:
    """Every transaction of ``purpose``, oldest first."""
    return _select(engine, purpose, only_unsettled=False)


def transactions_like(engine: Engine, prefix: str) -> list[TransactionRecord]:
    """Every transaction whose purpose starts with ``prefix``, oldest first."""
    with session_scope(engine) as session:
        rows = session.scalars(
            select(ChainTransaction)
            .where(ChainTransaction.purpose.startswith(prefix, autoescape=True))
            .order_by(ChainTransaction.id)
        ).all()
        return [TransactionRecord.model_validate(row) for row in rows]


def _select(engine: Engine, purpose: str, *, only_unsettled: bool) -> list[TransactionRecord]:
    query = select(ChainTransaction).where(ChainTransaction.purpose == purpose)
    if only_unsettled:
        query = query.where(ChainTransaction.status == "sent")
    with session_scope(engine) as session:
        rows = session.scalars(query.order_by(ChainTransaction.id)).all()
        return [TransactionRecord.model_validate(row) for row in rows]

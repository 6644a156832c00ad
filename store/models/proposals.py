"""Proposals and their sign-offs, executions and Slack threads (Alembic ``0001``,
``0004``, ``0005``).

A proposal is one request to change a program (upgrade, rollback, authority change,
kill-switch release); approvals are the sign-off attempts on it, an execution what
happened when it was carried out, a Slack thread the message later events reply to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

PROPOSAL_STATUSES: tuple[str, ...] = (
    "proposed",
    "approved",
    "executed",
    "cancelled",
    "rejected",
    "failed",
)


# A proposal in one of these states never changes status again: the records must not
# rewrite how an operation ended.
TERMINAL_STATUSES: frozenset[str] = frozenset({"executed", "cancelled", "rejected", "failed"})


BACKENDS: tuple[str, ...] = ("keypair", "onchain", "squads")


DECISIONS: tuple[str, ...] = ("approve", "reject", "cancel")


EXECUTION_OUTCOMES: tuple[str, ...] = ("upgraded", "already-applied", "failed")


class Proposal(Audited, Base):
    """One request to change a program (upgrade, rollback, authority change, ...)."""

    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The flow computes this key from the proposal's content, so a retried "record
    # proposal" task finds the row it already wrote instead of creating a second one.
    key: Mapped[str] = mapped_column(String, unique=True)
    kind: Mapped[str] = mapped_column(String)
    cluster: Mapped[str] = mapped_column(String)
    backend: Mapped[str] = mapped_column(String)
    # Multisig policy name (keypair/squads) or on-chain governance address (onchain).
    governance: Mapped[str] = mapped_column(String)
    program_id: Mapped[str] = mapped_column(String)
    # Not every kind carries a buffer (set-authority, kill-switch-release).
    buffer: Mapped[str | None] = mapped_column(String)
    buffer_hash: Mapped[str | None] = mapped_column(String)
    description: Mapped[str] = mapped_column(Text)
    proposer: Mapped[str] = mapped_column(String)
    members: Mapped[list[str]] = mapped_column(JSON)
    threshold: Mapped[int] = mapped_column(Integer)
    timelock_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    threshold_met_at: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]
    onchain_address: Mapped[str | None] = mapped_column(String)
    # The cluster's genesis hash (base58), named in the signed line; None for proposals
    # recorded before migration 0005_cluster_genesis, which can no longer be signed.
    genesis_hash: Mapped[str | None] = mapped_column(String)


class Approval(Audited, Base):
    """One sign-off attempt, accepted or refused. Refusals are kept: they are evidence."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), index=True)
    # As entered, even when malformed: the record shows what was actually submitted.
    member: Mapped[str] = mapped_column(String)
    decision: Mapped[str] = mapped_column(String)
    signature: Mapped[str | None] = mapped_column(String)
    comment: Mapped[str | None] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    # The off-chain envelope an accepted signature was made in ("standard" | "legacy");
    # None for refused attempts and rows recorded before it was kept (Alembic 0005).
    envelope: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A member counts once per proposal. The repository checks this first; this partial unique
# index is the guard that still holds when two runs race. Refused attempts are outside the
# index, so they can repeat; so is a cancel, which a member who approved may still send
# during the timelock (it closes the proposal: there is at most one).
Index(
    "uq_approvals_accepted_member",
    Approval.proposal_id,
    Approval.member,
    unique=True,
    sqlite_where=and_(Approval.accepted == true(), Approval.decision != "cancel"),
    postgresql_where=and_(Approval.accepted == true(), Approval.decision != "cancel"),
)


class Execution(Audited, Base):
    """What happened when a proposal was carried out (at most one per proposal)."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), unique=True)
    # None when nothing was sent because the chain already had the change.
    signature: Mapped[str | None] = mapped_column(String)
    old_hash: Mapped[str | None] = mapped_column(String)
    new_hash: Mapped[str | None] = mapped_column(String)
    slot_before: Mapped[int | None] = mapped_column(BigInteger)
    slot_after: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String)
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlackThread(Audited, Base):
    """The Slack message that opened a proposal's thread: later events reply to it
    (``thread_ts``), and it is updated (``chat.update``) as sign-offs arrive."""

    __tablename__ = "slack_threads"

    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), primary_key=True)
    # The channel id Slack answered with: chat.update needs the id, not a #name.
    channel: Mapped[str] = mapped_column(String)
    ts: Mapped[str] = mapped_column(String)
    # The opening message as posted; an update replaces its status lines only.
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

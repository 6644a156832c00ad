"""The records schema: what every runbook did, for the on-call engineer and the auditors.

Plain SQLAlchemy 2 declarative models, portable across SQLite and PostgreSQL:

- JSON columns use ``sqlalchemy.JSON`` (TEXT on SQLite, ``json`` on PostgreSQL).
- Datetimes go through :class:`UTCDateTime`: callers pass timezone-aware datetimes, the
  database holds UTC (``timestamptz`` on PostgreSQL, ISO text without offset on SQLite, so
  text order is time order), and reads always come back aware, in UTC, on both.
- Closed vocabularies (statuses, decisions, outcomes) are checked by the repository
  (``store.records``) rather than by CHECK constraints, so adding a value is a code
  change, not a table rebuild on SQLite.

The schema itself is created by the Alembic migrations in ``store/migrations``, never by
``metadata.create_all``; a test checks that models and migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    and_,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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

# Deterministic constraint names: Alembic's batch mode on SQLite (table copy) and later
# migrations need to refer to constraints by name on both backends.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, stored the same way on SQLite and PostgreSQL.

    SQLite has no timezone type: SQLAlchemy would silently drop the offset of an aware
    datetime and hand back naive values. Normalising to UTC on the way in and re-attaching
    UTC on the way out gives both backends the same behaviour. Naive datetimes are refused:
    their meaning depends on the machine that made them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as text without offset: always UTC, so lexical order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL answers in the session's TimeZone; report UTC whatever that is.
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every datetime column is a UTCDateTime unless a column says otherwise.
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - read by SQLAlchemy


class Proposal(Base):
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
    flow_run_id: Mapped[str | None] = mapped_column(String)
    onchain_address: Mapped[str | None] = mapped_column(String)


class Approval(Base):
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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String)


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


class Execution(Base):
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
    flow_run_id: Mapped[str | None] = mapped_column(String)


class AuditEvent(Base):
    """An append-only log line: who did what to which subject, and from which flow run."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    flow_run_id: Mapped[str | None] = mapped_column(String)


class ProgramHash(Base):
    """The last known verifiable-build hash of a program, per cluster (for health checks)."""

    __tablename__ = "program_hashes"

    cluster: Mapped[str] = mapped_column(String, primary_key=True)
    program_id: Mapped[str] = mapped_column(String, primary_key=True)
    hash: Mapped[str] = mapped_column(String)
    slot: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlackThread(Base):
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
    flow_run_id: Mapped[str | None] = mapped_column(String)


__all__ = [
    "BACKENDS",
    "DECISIONS",
    "EXECUTION_OUTCOMES",
    "PROPOSAL_STATUSES",
    "TERMINAL_STATUSES",
    "Approval",
    "AuditEvent",
    "Base",
    "Execution",
    "ProgramHash",
    "Proposal",
    "SlackThread",
    "UTCDateTime",
    "utcnow",
]

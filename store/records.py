"""The repository the flows call: short transactions over the records database.

Conventions, for every function here:

- It takes an ``Engine`` and runs one transaction of its own. A function that changes
  state writes its ``AuditEvent`` in that same transaction: there is no change without
  its audit row, and no audit row for a change that rolled back.
- It returns frozen dataclasses (``ProposalRecord``, ``ApprovalRecord``, ...), never ORM
  objects: they are plain values, safe to use after the session has closed, to pass
  between Prefect tasks and to compare in tests.
- Functions whose description says *idempotent* can be retried by a Prefect task: a retry
  returns what the first call recorded and writes nothing more (no second audit row).
- Bad arguments raise ``InputError``; an unknown proposal, a conflicting idempotency key or
  a database failure raise ``RecordsError``; sign-off rules raise ``DuplicateApproval`` or
  ``ProposalClosed``.
- Datetimes in and out are timezone-aware; they are stored and returned in UTC.

Concurrency: rows that decide a rule (the proposal for approvals, status and execution;
the program hash row) are read ``FOR UPDATE`` on PostgreSQL; SQLite transactions start
with ``BEGIN IMMEDIATE`` (see ``store.db.create_engine``). Unique constraints back every
idempotency rule, so two racing runs cannot both write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DuplicateApproval, InputError, ProposalClosed, RecordsError
from store.db import redacted, session_scope
from store.models import (
    BACKENDS,
    DECISIONS,
    EXECUTION_OUTCOMES,
    PROPOSAL_STATUSES,
    TERMINAL_STATUSES,
    Approval,
    AuditEvent,
    Execution,
    ProgramHash,
    Proposal,
    SlackThread,
    utcnow,
)

DEFAULT_ACTOR = "runbooks"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    id: int
    key: str
    kind: str
    cluster: str
    backend: str
    governance: str
    program_id: str
    buffer: str | None
    buffer_hash: str | None
    description: str
    proposer: str
    members: tuple[str, ...]
    threshold: int
    timelock_seconds: int
    status: str
    created_at: datetime
    threshold_met_at: datetime | None
    executed_at: datetime | None
    flow_run_id: str | None
    onchain_address: str | None

    @property
    def closed(self) -> bool:
        """Executed, cancelled, rejected or failed: its status will not change again."""
        return self.status in TERMINAL_STATUSES

    @property
    def timelock_ends_at(self) -> datetime | None:
        """When execution becomes allowed (None until the threshold is met)."""
        if self.threshold_met_at is None:
            return None
        return self.threshold_met_at + timedelta(seconds=self.timelock_seconds)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    proposal_id: int
    member: str
    decision: str
    signature: str | None
    comment: str | None
    accepted: bool
    reason: str | None
    created_at: datetime
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    id: int
    proposal_id: int
    signature: str | None
    old_hash: str | None
    new_hash: str | None
    slot_before: int | None
    slot_after: int | None
    outcome: str
    detail: str | None
    created_at: datetime
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class ProgramHashRecord:
    cluster: str
    program_id: str
    hash: str
    slot: int
    recorded_at: datetime


def proposal_subject(proposal_id: int) -> str:
    """The audit ``subject`` of everything that happens to a proposal."""
    return f"proposal:{proposal_id}"


def program_subject(cluster: str, program_id: str) -> str:
    """The audit ``subject`` of a program's recorded hash."""
    return f"program:{cluster}:{program_id}"


# ------------------------------------------------------------------------- proposals

# The content a proposal key stands for: a retry must bring the same values.
_PROPOSAL_CONTENT = (
    "kind",
    "cluster",
    "backend",
    "governance",
    "program_id",
    "buffer",
    "buffer_hash",
    "description",
    "proposer",
    "members",
    "threshold",
    "timelock_seconds",
)


def record_proposal(
    engine: Engine,
    *,
    key: str,
    kind: str,
    cluster: str,
    backend: str,
    governance: str,
    program_id: str,
    description: str,
    proposer: str,
    members: Sequence[str],
    threshold: int,
    timelock_seconds: int,
    buffer: str | None = None,
    buffer_hash: str | None = None,
    flow_run_id: str | None = None,
    onchain_address: str | None = None,
    created_at: datetime | None = None,
) -> ProposalRecord:
    """Record a new proposal (status ``proposed``); idempotent on ``key``.

    When ``key`` is already recorded, the existing proposal is returned and nothing is
    written, provided the content is the same; a different content under the same key
    raises ``RecordsError`` (the key must identify one proposal). Audit:
    ``proposal.created`` by ``proposer``.
    """
    content: dict[str, Any] = {
        "kind": _text("kind", kind),
        "cluster": _text("cluster", cluster),
        "backend": _choice("backend", backend, BACKENDS),
        "governance": _text("governance", governance),
        "program_id": _text("program_id", program_id),
        "buffer": _optional_text("buffer", buffer),
        "buffer_hash": None if buffer_hash is None else _sha256_hex("buffer_hash", buffer_hash),
        "description": _string("description", description),
        "proposer": _text("proposer", proposer),
        "members": _members(members),
        "threshold": _int("threshold", threshold, minimum=1),
        "timelock_seconds": _int("timelock_seconds", timelock_seconds, minimum=0),
    }
    if content["threshold"] > len(content["members"]):
        raise InputError(
            f"threshold {threshold} is more than the {len(content['members'])} members: "
            "nobody could ever meet it. Fix the multisig policy."
        )
    key = _text("key", key)
    created = _aware("created_at", created_at)

    # Two attempts: a concurrent insert of the same key makes the first one fail on the
    # unique constraint, and the second then finds the row the other run wrote.
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                existing = session.scalar(select(Proposal).where(Proposal.key == key))
                if existing is not None:
                    _check_same_content(engine, existing, content)
                    return _proposal_record(existing)
                proposal = Proposal(
                    key=key,
                    status="proposed",
                    created_at=created,
                    flow_run_id=flow_run_id,
                    onchain_address=onchain_address,
                    **content,
                )
                session.add(proposal)
                _flush_or_conflict(session)
                _write_audit(
                    session,
                    actor=content["proposer"],
                    action="proposal.created",
                    subject=proposal_subject(proposal.id),
                    details={
                        "key": key,
                        "kind": content["kind"],
                        "cluster": content["cluster"],
                        "backend": content["backend"],
                        "governance": content["governance"],
                        "program_id": content["program_id"],
                        "buffer": content["buffer"],
                        "buffer_hash": content["buffer_hash"],
                        "members": content["members"],
                        "threshold": content["threshold"],
                        "timelock_seconds": content["timelock_seconds"],
                    },
                    flow_run_id=flow_run_id,
                    at=created,
                )
                return _proposal_record(proposal)
        except _Conflict:
            continue
    raise RecordsError(
        f"proposal key {key!r} kept conflicting in {redacted(engine.url)}; "
        "retry the task, and report it if it persists."
    )


def get_proposal(engine: Engine, proposal_id: int) -> ProposalRecord | None:
    """The proposal with this id, or None."""
    with session_scope(engine) as session:
        proposal = session.get(Proposal, proposal_id)
        return None if proposal is None else _proposal_record(proposal)


def get_proposal_by_key(engine: Engine, key: str) -> ProposalRecord | None:
    """The proposal recorded under this idempotency key, or None."""
    with session_scope(engine) as session:
        proposal = session.scalar(select(Proposal).where(Proposal.key == key))
        return None if proposal is None else _proposal_record(proposal)


def set_proposal_status(
    engine: Engine,
    proposal_id: int,
    status: str,
    *,
    actor: str = DEFAULT_ACTOR,
    reason: str | None = None,
    flow_run_id: str | None = None,
    threshold_met_at: datetime | None = None,
    executed_at: datetime | None = None,
) -> ProposalRecord:
    """Move a proposal to ``status``; idempotent.

    Timestamps are set once: a given ``threshold_met_at`` / ``executed_at`` is ignored when
    the proposal already has one (the first time is the one that counts). Becoming
    ``executed`` without ``executed_at`` stamps now. A proposal that is closed (executed,
    cancelled, rejected, failed) cannot move to another status: ``ProposalClosed``.
    Same status and nothing new to stamp: nothing is written. Audit: ``proposal.status``.
    """
    status = _choice("status", status, PROPOSAL_STATUSES)
    threshold_met_at = _aware_or_none("threshold_met_at", threshold_met_at)
    executed_at = _aware_or_none("executed_at", executed_at)
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        previous = proposal.status
        if previous in TERMINAL_STATUSES and status != previous:
            raise ProposalClosed(
                f"proposal {proposal_id} is {previous} already and cannot become {status}; "
                "start a new proposal instead."
            )
        if status == "executed" and executed_at is None and proposal.executed_at is None:
            executed_at = utcnow()
        stamped: dict[str, str] = {}
        if threshold_met_at is not None and proposal.threshold_met_at is None:
            proposal.threshold_met_at = threshold_met_at
            stamped["threshold_met_at"] = threshold_met_at.isoformat()
        if executed_at is not None and proposal.executed_at is None:
            proposal.executed_at = executed_at
            stamped["executed_at"] = executed_at.isoformat()
        if status == previous and not stamped:
            return _proposal_record(proposal)
        proposal.status = status
        _write_audit(
            session,
            actor=actor,
            action="proposal.status",
            subject=proposal_subject(proposal_id),
            details={"from": previous, "to": status, "reason": reason, **stamped},
            flow_run_id=flow_run_id,
        )
        return _proposal_record(proposal)


def mark_threshold_met(
    engine: Engine,
    proposal_id: int,
    at: datetime | None = None,
    *,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> ProposalRecord:
    """Record when the sign-off threshold was met (the timelock runs from then); idempotent.

    Keeps the first time: a later call returns the proposal unchanged. A ``proposed``
    proposal becomes ``approved``. Audit: ``proposal.threshold_met``. A closed proposal
    that never met its threshold raises ``ProposalClosed``.
    """
    met_at = _aware("at", at)
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        if proposal.threshold_met_at is not None:
            return _proposal_record(proposal)
        if proposal.status in TERMINAL_STATUSES:
            raise ProposalClosed(
                f"proposal {proposal_id} is {proposal.status}; its threshold can no longer "
                "be met. Start a new proposal instead."
            )
        previous = proposal.status
        proposal.threshold_met_at = met_at
        if proposal.status == "proposed":
            proposal.status = "approved"
        _write_audit(
            session,
            actor=actor,
            action="proposal.threshold_met",
            subject=proposal_subject(proposal_id),
            details={
                "at": met_at.isoformat(),
                "timelock_ends_at": (met_at + timedelta(seconds=proposal.timelock_seconds))
                .astimezone(UTC)
                .isoformat(),
                "from": previous,
                "to": proposal.status,
            },
            flow_run_id=flow_run_id,
            at=met_at,
        )
        return _proposal_record(proposal)


def set_onchain_address(
    engine: Engine,
    proposal_id: int,
    address: str,
    *,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> ProposalRecord:
    """Record the proposal's on-chain account (created after the proposal row); idempotent.

    A different address for a proposal that already has one raises ``RecordsError``.
    Audit: ``proposal.onchain_address``.
    """
    address = _text("address", address)
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        if proposal.onchain_address == address:
            return _proposal_record(proposal)
        if proposal.onchain_address is not None:
            raise RecordsError(
                f"proposal {proposal_id} is already recorded at {proposal.onchain_address}, "
                f"not {address}; check which on-chain proposal this run created."
            )
        proposal.onchain_address = address
        _write_audit(
            session,
            actor=actor,
            action="proposal.onchain_address",
            subject=proposal_subject(proposal_id),
            details={"address": address},
            flow_run_id=flow_run_id,
        )
        return _proposal_record(proposal)


# ------------------------------------------------------------------------- approvals


def record_approval(
    engine: Engine,
    proposal_id: int,
    *,
    member: str,
    decision: str,
    accepted: bool,
    signature: str | None = None,
    comment: str | None = None,
    reason: str | None = None,
    flow_run_id: str | None = None,
    at: datetime | None = None,
) -> ApprovalRecord:
    """Record one sign-off attempt, accepted or refused.

    ``member`` is kept as entered (even malformed: it is evidence). A refused attempt
    (``accepted=False``) needs a ``reason`` and may repeat. An accepted approve or reject
    is unique per (proposal, member): a second raises ``DuplicateApproval`` and writes
    nothing (record the refusal with ``accepted=False`` if it should be kept); an accepted
    cancel may follow the member's approval (it closes the proposal). Accepting on a closed
    proposal raises ``ProposalClosed``. Audit: ``approval.accepted`` /
    ``approval.refused``, by ``member``.
    """
    if not isinstance(member, str):
        raise InputError(f"member must be text, got {type(member).__name__}")
    decision = _choice("decision", decision, DECISIONS)
    if not isinstance(accepted, bool):
        raise InputError(f"accepted must be True or False, got {accepted!r}")
    if not accepted and not (reason and reason.strip()):
        raise InputError("a refused approval needs a reason: the records must say why")
    created = _aware("at", at)
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        if accepted:
            if proposal.status in TERMINAL_STATUSES:
                raise ProposalClosed(
                    f"proposal {proposal_id} is {proposal.status}; it takes no more "
                    "sign-offs. Start a new proposal if the change is still wanted."
                )
            earlier = session.scalar(
                select(Approval).where(
                    Approval.proposal_id == proposal_id,
                    Approval.member == member,
                    Approval.accepted.is_(True),
                    Approval.decision != "cancel",
                )
            )
            if earlier is not None and decision != "cancel":
                raise _duplicate(proposal_id, member, earlier)
        approval = Approval(
            proposal_id=proposal_id,
            member=member,
            decision=decision,
            signature=signature,
            comment=comment,
            accepted=accepted,
            reason=reason,
            created_at=created,
            flow_run_id=flow_run_id,
        )
        session.add(approval)
        try:
            session.flush()
        except IntegrityError:
            # The proposal exists and is locked, so only the partial unique index can
            # refuse this row: another run recorded the same member first.
            raise _duplicate(proposal_id, member, None) from None
        _write_audit(
            session,
            actor=member,
            action="approval.accepted" if accepted else "approval.refused",
            subject=proposal_subject(proposal_id),
            details={
                "approval_id": approval.id,
                "member": member,
                "decision": decision,
                "accepted": accepted,
                "reason": reason,
            },
            flow_run_id=flow_run_id,
            at=created,
        )
        return _approval_record(approval)


def accepted_approvals(engine: Engine, proposal_id: int) -> list[ApprovalRecord]:
    """Accepted sign-offs of a proposal (approvals and rejections), oldest first."""
    return _approvals(engine, proposal_id, only_accepted=True)


def approvals(engine: Engine, proposal_id: int) -> list[ApprovalRecord]:
    """Every sign-off attempt on a proposal, refused ones included, oldest first."""
    return _approvals(engine, proposal_id, only_accepted=False)


# ------------------------------------------------------------------------ executions


def record_execution(
    engine: Engine,
    proposal_id: int,
    *,
    outcome: str,
    signature: str | None = None,
    old_hash: str | None = None,
    new_hash: str | None = None,
    slot_before: int | None = None,
    slot_after: int | None = None,
    detail: str | None = None,
    flow_run_id: str | None = None,
    at: datetime | None = None,
    actor: str = DEFAULT_ACTOR,
) -> ExecutionRecord:
    """Record how a proposal was carried out; idempotent per proposal (the first one stays).

    Record the final outcome only: a transient failure the task will retry is not an
    execution. The proposal's status follows in the same transaction: ``upgraded`` and
    ``already-applied`` make it ``executed`` (``executed_at`` = ``at``), ``failed`` makes it
    ``failed``. This is the chain's account of what happened, so it is recorded whatever
    the previous status; the audit row keeps that status. Audit: ``execution.recorded``.
    """
    outcome = _choice("outcome", outcome, EXECUTION_OUTCOMES)
    for name, value in (("old_hash", old_hash), ("new_hash", new_hash)):
        if value is not None:
            _sha256_hex(name, value)
    for name, slot in (("slot_before", slot_before), ("slot_after", slot_after)):
        if slot is not None:
            _int(name, slot, minimum=0)
    created = _aware("at", at)
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        existing = session.scalar(select(Execution).where(Execution.proposal_id == proposal_id))
        if existing is not None:
            return _execution_record(existing)
        execution = Execution(
            proposal_id=proposal_id,
            signature=signature,
            old_hash=None if old_hash is None else old_hash.lower(),
            new_hash=None if new_hash is None else new_hash.lower(),
            slot_before=slot_before,
            slot_after=slot_after,
            outcome=outcome,
            detail=detail,
            created_at=created,
            flow_run_id=flow_run_id,
        )
        session.add(execution)
        # The proposal row is locked, so the unique proposal_id cannot race here.
        session.flush()
        previous = proposal.status
        if outcome == "failed":
            proposal.status = "failed"
        else:
            proposal.status = "executed"
            if proposal.executed_at is None:
                proposal.executed_at = created
        _write_audit(
            session,
            actor=actor,
            action="execution.recorded",
            subject=proposal_subject(proposal_id),
            details={
                "execution_id": execution.id,
                "outcome": outcome,
                "signature": signature,
                "old_hash": execution.old_hash,
                "new_hash": execution.new_hash,
                "slot_before": slot_before,
                "slot_after": slot_after,
                "from": previous,
                "to": proposal.status,
            },
            flow_run_id=flow_run_id,
            at=created,
        )
        return _execution_record(execution)


def get_execution(engine: Engine, proposal_id: int) -> ExecutionRecord | None:
    """The execution of a proposal, or None."""
    with session_scope(engine) as session:
        execution = session.scalar(select(Execution).where(Execution.proposal_id == proposal_id))
        return None if execution is None else _execution_record(execution)


# ---------------------------------------------------------------------- slack threads


@dataclass(frozen=True, slots=True)
class SlackThreadRecord:
    proposal_id: int
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    created_at: datetime


def record_slack_thread(
    engine: Engine,
    proposal_id: int,
    *,
    channel: str,
    ts: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]],
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> SlackThreadRecord:
    """Remember the message that opened ``proposal_id``'s Slack thread; idempotent.

    The first thread recorded wins: a second call (a retry, a racing run) returns it.
    Audit: ``proposal.slack_thread``.
    """
    fields = {"channel": _text("channel", channel), "ts": _text("ts", ts), "text": text}
    with session_scope(engine) as session:
        _lock_proposal(session, engine, proposal_id)
        existing = session.get(SlackThread, proposal_id)
        if existing is not None:
            return _slack_thread_record(existing)
        thread = SlackThread(
            proposal_id=proposal_id,
            blocks=json.loads(json.dumps(list(blocks))),
            flow_run_id=flow_run_id,
            **fields,
        )
        session.add(thread)
        _write_audit(
            session,
            actor=actor,
            action="proposal.slack_thread",
            subject=proposal_subject(proposal_id),
            details={"channel": fields["channel"], "ts": fields["ts"]},
            flow_run_id=flow_run_id,
        )
        return _slack_thread_record(thread)


def get_slack_thread(engine: Engine, proposal_id: int) -> SlackThreadRecord | None:
    """The Slack thread of a proposal, or None when none was opened."""
    with session_scope(engine) as session:
        thread = session.get(SlackThread, proposal_id)
        return None if thread is None else _slack_thread_record(thread)


def _slack_thread_record(t: SlackThread) -> SlackThreadRecord:
    return SlackThreadRecord(
        proposal_id=t.proposal_id,
        channel=t.channel,
        ts=t.ts,
        text=t.text,
        blocks=list(t.blocks),
        created_at=_utc(t.created_at),
    )


# ----------------------------------------------------------------------------- audit


def audit(
    engine: Engine,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
    *,
    at: datetime | None = None,
) -> AuditRecord:
    """Append an audit row for something that changed no other record (a check, a notice).

    ``details`` must be JSON-serialisable (``InputError`` otherwise).
    """
    with session_scope(engine) as session:
        return _write_audit(
            session,
            actor=_text("actor", actor),
            action=_text("action", action),
            subject=_text("subject", subject),
            details=details,
            flow_run_id=flow_run_id,
            at=_aware("at", at),
        )


def audit_events(
    engine: Engine,
    subject: str | None = None,
    *,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Audit rows in the order they were written, optionally for one subject / action.

    ``limit`` keeps the newest ``limit`` rows (still oldest first).
    """
    query = select(AuditEvent)
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with session_scope(engine) as session:
        if limit is None:
            rows = session.scalars(query.order_by(AuditEvent.id)).all()
        else:
            newest = session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
            rows = list(reversed(newest))
        return [_audit_record(row) for row in rows]


# ---------------------------------------------------------------------- program hash


def set_program_hash(
    engine: Engine,
    cluster: str,
    program_id: str,
    hash: str,
    slot: int,
    *,
    recorded_at: datetime | None = None,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> ProgramHashRecord:
    """Record the verifiable-build hash a program has on ``cluster`` as of ``slot``.

    Idempotent: the same hash and slot again write nothing. Audit:
    ``program_hash.recorded`` (with the previous hash, so a change shows in the log).
    """
    cluster = _text("cluster", cluster)
    program_id = _text("program_id", program_id)
    digest = _sha256_hex("hash", hash)
    slot = _int("slot", slot, minimum=0)
    when = _aware("recorded_at", recorded_at)
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                row = session.scalar(
                    select(ProgramHash)
                    .where(ProgramHash.cluster == cluster, ProgramHash.program_id == program_id)
                    .with_for_update()
                )
                if row is not None and row.hash == digest and row.slot == slot:
                    return _program_hash_record(row)
                previous = None if row is None else {"hash": row.hash, "slot": row.slot}
                if row is None:
                    row = ProgramHash(cluster=cluster, program_id=program_id)
                    session.add(row)
                row.hash, row.slot, row.recorded_at = digest, slot, when
                _flush_or_conflict(session)
                _write_audit(
                    session,
                    actor=actor,
                    action="program_hash.recorded",
                    subject=program_subject(cluster, program_id),
                    details={"hash": digest, "slot": slot, "previous": previous},
                    flow_run_id=flow_run_id,
                    at=when,
                )
                return _program_hash_record(row)
        except _Conflict:
            continue
    raise RecordsError(
        f"the hash of {program_id} on {cluster} kept conflicting in {redacted(engine.url)}; "
        "retry the task, and report it if it persists."
    )


def get_program_hash(engine: Engine, cluster: str, program_id: str) -> ProgramHashRecord | None:
    """The last recorded hash of a program on a cluster, or None."""
    with session_scope(engine) as session:
        row = session.get(ProgramHash, (cluster, program_id))
        return None if row is None else _program_hash_record(row)


# --------------------------------------------------------------------------- helpers


class _Conflict(Exception):
    """A unique constraint refused an insert that a concurrent transaction made first."""


def _flush_or_conflict(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise _Conflict from None


def _write_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None,
    flow_run_id: str | None,
    at: datetime | None = None,
) -> AuditRecord:
    """Add the audit row to the caller's transaction (it commits or rolls back with it)."""
    payload = dict(details or {})
    try:
        # Refuse here, with a clear message, what the JSON column would refuse at commit.
        payload = json.loads(json.dumps(payload))
    except (TypeError, ValueError) as exc:
        raise InputError(f"audit details for {action} are not JSON-serialisable: {exc}") from None
    event = AuditEvent(
        at=at or utcnow(),
        actor=actor,
        action=action,
        subject=subject,
        details=payload,
        flow_run_id=flow_run_id,
    )
    session.add(event)
    session.flush()
    return _audit_record(event)


def _lock_proposal(session: Session, engine: Engine, proposal_id: int) -> Proposal:
    if isinstance(proposal_id, bool) or not isinstance(proposal_id, int):
        raise InputError(f"proposal_id must be an integer, got {proposal_id!r}")
    proposal = session.scalar(select(Proposal).where(Proposal.id == proposal_id).with_for_update())
    if proposal is None:
        raise RecordsError(
            f"no proposal {proposal_id} in the records database at {redacted(engine.url)}; "
            "check the proposal id (and that DATABASE_URL is the database the run used)."
        )
    return proposal


def _approvals(engine: Engine, proposal_id: int, *, only_accepted: bool) -> list[ApprovalRecord]:
    query = select(Approval).where(Approval.proposal_id == proposal_id)
    if only_accepted:
        query = query.where(Approval.accepted.is_(True))
    with session_scope(engine) as session:
        rows = session.scalars(query.order_by(Approval.created_at, Approval.id)).all()
        return [_approval_record(row) for row in rows]


def _duplicate(proposal_id: int, member: str, earlier: Approval | None) -> DuplicateApproval:
    when = "" if earlier is None else f" at {earlier.created_at.isoformat()}"
    return DuplicateApproval(
        f"{member} has already signed off proposal {proposal_id}{when}; each member counts "
        "once, so this attempt was not recorded as accepted."
    )


def _check_same_content(engine: Engine, existing: Proposal, content: Mapping[str, Any]) -> None:
    differing = [name for name in _PROPOSAL_CONTENT if getattr(existing, name) != content[name]]
    if differing:
        raise RecordsError(
            f"proposal key {existing.key!r} is already recorded as proposal {existing.id} "
            f"in {redacted(engine.url)} with a different {', '.join(differing)}; a key must "
            "identify one proposal. Check how the flow computes the key."
        )


def _proposal_record(p: Proposal) -> ProposalRecord:
    return ProposalRecord(
        id=p.id,
        key=p.key,
        kind=p.kind,
        cluster=p.cluster,
        backend=p.backend,
        governance=p.governance,
        program_id=p.program_id,
        buffer=p.buffer,
        buffer_hash=p.buffer_hash,
        description=p.description,
        proposer=p.proposer,
        members=tuple(p.members),
        threshold=p.threshold,
        timelock_seconds=p.timelock_seconds,
        status=p.status,
        created_at=_utc(p.created_at),
        threshold_met_at=_utc_or_none(p.threshold_met_at),
        executed_at=_utc_or_none(p.executed_at),
        flow_run_id=p.flow_run_id,
        onchain_address=p.onchain_address,
    )


def _approval_record(a: Approval) -> ApprovalRecord:
    return ApprovalRecord(
        id=a.id,
        proposal_id=a.proposal_id,
        member=a.member,
        decision=a.decision,
        signature=a.signature,
        comment=a.comment,
        accepted=a.accepted,
        reason=a.reason,
        created_at=_utc(a.created_at),
        flow_run_id=a.flow_run_id,
    )


def _execution_record(e: Execution) -> ExecutionRecord:
    return ExecutionRecord(
        id=e.id,
        proposal_id=e.proposal_id,
        signature=e.signature,
        old_hash=e.old_hash,
        new_hash=e.new_hash,
        slot_before=e.slot_before,
        slot_after=e.slot_after,
        outcome=e.outcome,
        detail=e.detail,
        created_at=_utc(e.created_at),
        flow_run_id=e.flow_run_id,
    )


def _audit_record(e: AuditEvent) -> AuditRecord:
    return AuditRecord(
        id=e.id,
        at=_utc(e.at),
        actor=e.actor,
        action=e.action,
        subject=e.subject,
        details=dict(e.details),
        flow_run_id=e.flow_run_id,
    )


def _program_hash_record(h: ProgramHash) -> ProgramHashRecord:
    return ProgramHashRecord(
        cluster=h.cluster,
        program_id=h.program_id,
        hash=h.hash,
        slot=h.slot,
        recorded_at=_utc(h.recorded_at),
    )


# Validation: InputError messages name the field and what is expected.


def _utc(value: datetime) -> datetime:
    # Objects just written still hold the caller's value; loaded ones are UTC already.
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _aware(name: str, value: datetime | None) -> datetime:
    """``value`` in UTC, or now when None."""
    return utcnow() if value is None else _check_aware(name, value)


def _aware_or_none(name: str, value: datetime | None) -> datetime | None:
    return None if value is None else _check_aware(name, value)


def _check_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(
            f"{name} {value.isoformat()} has no timezone; pass an aware datetime "
            "(e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC)


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    return value


def _text(name: str, value: object) -> str:
    text = _string(name, value)
    if not text.strip():
        raise InputError(f"{name} must not be empty")
    return text


def _optional_text(name: str, value: object) -> str | None:
    return None if value is None else _text(name, value)


def _choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return value


def _sha256_hex(name: str, value: object) -> str:
    text = _string(name, value).strip().lower()
    if not _HEX_SHA256.fullmatch(text):
        raise InputError(
            f"{name} must be a SHA-256 in hex (64 characters 0-9a-f), got {value!r}; "
            "use the hash solana-verify prints"
        )
    return text


def _members(members: object) -> list[str]:
    if isinstance(members, str) or not isinstance(members, Sequence):
        raise InputError("members must be a list of base58 public keys")
    listed = [_text("member", m) for m in members]
    if not listed:
        raise InputError("members must not be empty")
    duplicates = sorted({m for m in listed if listed.count(m) > 1})
    if duplicates:
        raise InputError(f"members lists {', '.join(duplicates)} more than once")
    return listed


__all__ = [
    "DEFAULT_ACTOR",
    "ApprovalRecord",
    "AuditRecord",
    "ExecutionRecord",
    "ProgramHashRecord",
    "ProposalRecord",
    "accepted_approvals",
    "approvals",
    "audit",
    "audit_events",
    "get_execution",
    "get_program_hash",
    "get_proposal",
    "get_proposal_by_key",
    "mark_threshold_met",
    "program_subject",
    "proposal_subject",
    "record_approval",
    "record_execution",
    "record_proposal",
    "set_onchain_address",
    "set_program_hash",
    "set_proposal_status",
]

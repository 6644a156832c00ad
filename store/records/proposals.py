"""Records of the proposals every sign-off runbook opens: the proposal, its sign-offs and
its execution.

Proposals are the spine of the upgrade, rollback, kill-switch release and key-rotation
runbooks; ``lock_proposal`` is what the other repository modules use when a change of
theirs depends on a proposal (it is read ``FOR UPDATE`` on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.approval import ENVELOPES
from core.errors import DuplicateApproval, InputError, ProposalClosed, RecordsError
from store.db import redacted, session_scope
from store.models import (
    BACKENDS,
    DECISIONS,
    EXECUTION_OUTCOMES,
    PROPOSAL_STATUSES,
    TERMINAL_STATUSES,
    Approval,
    Execution,
    Proposal,
    utcnow,
)
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _aware,
    _aware_or_none,
    _choice,
    _int,
    _optional_text,
    _sha256_hex,
    _string,
    _text,
    _write_audit,
    insert_once,
)


class ProposalRecord(Record):
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
    genesis_hash: str | None = None  # the cluster's; the signed line names it

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


class ApprovalRecord(Record):
    id: int
    proposal_id: int
    member: str
    decision: str
    signature: str | None
    comment: str | None
    accepted: bool
    reason: str | None
    envelope: str | None
    created_at: datetime
    flow_run_id: str | None


class ExecutionRecord(Record):
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


def proposal_subject(proposal_id: int) -> str:
    """The audit ``subject`` of everything that happens to a proposal."""
    return f"proposal:{proposal_id}"


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
    "genesis_hash",
)


# What the ``proposal.created`` audit row repeats of it.
_AUDITED_CONTENT = (
    "kind",
    "cluster",
    "backend",
    "governance",
    "program_id",
    "buffer",
    "buffer_hash",
    "members",
    "threshold",
    "timelock_seconds",
    "genesis_hash",
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
    genesis_hash: str | None = None,
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
        "genesis_hash": _optional_text("genesis_hash", genesis_hash),
    }
    if content["threshold"] > len(content["members"]):
        raise InputError(
            f"threshold {threshold} is more than the {len(content['members'])} members: "
            "nobody could ever meet it. Fix the multisig policy."
        )
    key = _text("key", key)
    created = _aware("created_at", created_at)

    def find(session: Session) -> Proposal | None:
        existing = session.scalar(select(Proposal).where(Proposal.key == key))
        if existing is not None:
            _check_same_content(engine, existing, content)
        return existing

    return insert_once(
        engine,
        ProposalRecord,
        find=find,
        new=lambda: Proposal(
            key=key,
            status="proposed",
            created_at=created,
            flow_run_id=flow_run_id,
            onchain_address=onchain_address,
            **content,
        ),
        audit=lambda proposal: {
            "actor": content["proposer"],
            "action": "proposal.created",
            "subject": proposal_subject(proposal.id),
            "details": {
                "key": key,
                **{name: content[name] for name in _AUDITED_CONTENT},
            },
            "flow_run_id": flow_run_id,
            "at": created,
        },
        what=f"proposal key {key!r}",
    )


def get_proposal(engine: Engine, proposal_id: int) -> ProposalRecord | None:
    """The proposal with this id, or None."""
    with session_scope(engine) as session:
        proposal = session.get(Proposal, proposal_id)
        return None if proposal is None else ProposalRecord.model_validate(proposal)


def get_proposal_by_key(engine: Engine, key: str) -> ProposalRecord | None:
    """The proposal recorded under this idempotency key, or None."""
    with session_scope(engine) as session:
        proposal = session.scalar(select(Proposal).where(Proposal.key == key))
        return None if proposal is None else ProposalRecord.model_validate(proposal)


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
        proposal = lock_proposal(session, engine, proposal_id)
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
            return ProposalRecord.model_validate(proposal)
        proposal.status = status
        _write_audit(
            session,
            actor=actor,
            action="proposal.status",
            subject=proposal_subject(proposal_id),
            details={"from": previous, "to": status, "reason": reason, **stamped},
            flow_run_id=flow_run_id,
        )
        return ProposalRecord.model_validate(proposal)


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
        proposal = lock_proposal(session, engine, proposal_id)
        if proposal.threshold_met_at is not None:
            return ProposalRecord.model_validate(proposal)
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
        return ProposalRecord.model_validate(proposal)


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
        proposal = lock_proposal(session, engine, proposal_id)
        if proposal.onchain_address == address:
            return ProposalRecord.model_validate(proposal)
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
        return ProposalRecord.model_validate(proposal)


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
    envelope: str | None = None,
    flow_run_id: str | None = None,
    at: datetime | None = None,
) -> ApprovalRecord:
    """Record one sign-off attempt, accepted or refused.

    ``member`` is kept as entered (even malformed: it is evidence). A refused attempt
    (``accepted=False``) needs a ``reason`` and may repeat. An accepted approve or reject
    is unique per (proposal, member): a second raises ``DuplicateApproval`` and writes
    nothing (record the refusal with ``accepted=False`` if it should be kept); an accepted
    cancel may follow the member's approval (it closes the proposal). ``envelope`` is the
    off-chain envelope an accepted signature was made in (``standard`` or ``legacy``); a
    refused attempt has none. Accepting on a closed proposal raises ``ProposalClosed``.
    Audit: ``approval.accepted`` / ``approval.refused``, by ``member``.
    """
    if not isinstance(member, str):
        raise InputError(f"member must be text, got {type(member).__name__}")
    decision = _choice("decision", decision, DECISIONS)
    if not isinstance(accepted, bool):
        raise InputError(f"accepted must be True or False, got {accepted!r}")
    if not accepted and not (reason and reason.strip()):
        raise InputError("a refused approval needs a reason: the records must say why")
    if envelope is not None:
        envelope = _choice("envelope", envelope, ENVELOPES)
        if not accepted:
            raise InputError(
                "a refused approval has no envelope: only an accepted signature was made in one"
            )
    created = _aware("at", at)
    with session_scope(engine) as session:
        proposal = lock_proposal(session, engine, proposal_id)
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
            envelope=envelope,
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
                "envelope": envelope,
            },
            flow_run_id=flow_run_id,
            at=created,
        )
        return ApprovalRecord.model_validate(approval)


def accepted_approvals(engine: Engine, proposal_id: int) -> list[ApprovalRecord]:
    """Accepted sign-offs of a proposal (approvals and rejections), oldest first."""
    return _approvals(engine, proposal_id, only_accepted=True)


def approvals(engine: Engine, proposal_id: int) -> list[ApprovalRecord]:
    """Every sign-off attempt on a proposal, refused ones included, oldest first."""
    return _approvals(engine, proposal_id, only_accepted=False)


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
        proposal = lock_proposal(session, engine, proposal_id)
        existing = session.scalar(select(Execution).where(Execution.proposal_id == proposal_id))
        if existing is not None:
            return ExecutionRecord.model_validate(existing)
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
        return ExecutionRecord.model_validate(execution)


def get_execution(engine: Engine, proposal_id: int) -> ExecutionRecord | None:
    """The execution of a proposal, or None."""
    with session_scope(engine) as session:
        execution = session.scalar(select(Execution).where(Execution.proposal_id == proposal_id))
        return None if execution is None else ExecutionRecord.model_validate(execution)


# --------------------------------------------------------------------------- helpers


def lock_proposal(session: Session, engine: Engine, proposal_id: int) -> Proposal:
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
        return [ApprovalRecord.model_validate(row) for row in rows]


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

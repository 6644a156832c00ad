"""The repository functions the flows call, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DuplicateApproval, InputError, ProposalClosed, RecordsError
from store import records
from store.models import Approval, AuditEvent, Proposal
from store.records import _base
from store.records import audit as audit_records
from store.records import health as health_records
from store.records import proposals as proposals_records
from store.records.proposals import proposal_subject

MEMBERS = (
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
)
HASH_A = "a" * 64
HASH_B = "b" * 64
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def propose(
    engine: Engine, key: str = "upgrade-1", **overrides: Any
) -> proposals_records.ProposalRecord:
    fields: dict[str, Any] = {
        "key": key,
        "kind": "upgrade",
        "cluster": "localnet",
        "backend": "onchain",
        "governance": "GovErnance1111111111111111111111111111111111",
        "program_id": "Prog1111111111111111111111111111111111111111",
        "buffer": "Buff1111111111111111111111111111111111111111",
        "buffer_hash": HASH_A,
        "description": "Upgrade the vault program to v2",
        "proposer": "alice",
        "members": list(MEMBERS),
        "threshold": 2,
        "timelock_seconds": 3600,
        "flow_run_id": "run-1",
    }
    fields.update(overrides)
    return proposals_records.record_proposal(engine, **fields)


def count(engine: Engine, model: type[Any]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def actions(engine: Engine, subject: str | None = None) -> list[str]:
    return [e.action for e in audit_records.audit_events(engine, subject)]


def run_together(n: int, call: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``call`` in ``n`` threads released at the same moment."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            value = call()
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


# ------------------------------------------------------------------------- proposals


def test_record_proposal_returns_detached_frozen_record(engine: Engine) -> None:
    p = propose(engine, created_at=T0)
    assert p.status == "proposed"
    assert p.members == MEMBERS
    assert p.created_at == T0 and p.created_at.tzinfo is UTC
    assert p.threshold_met_at is None and p.timelock_ends_at is None
    assert not p.closed
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        p.status = "executed"  # type: ignore[misc]
    assert proposals_records.get_proposal(engine, p.id) == p
    assert proposals_records.get_proposal_by_key(engine, "upgrade-1") == p
    assert proposals_records.get_proposal(engine, p.id + 1000) is None
    assert proposals_records.get_proposal_by_key(engine, "nope") is None


def test_record_proposal_is_idempotent_on_key(engine: Engine) -> None:
    first = propose(engine)
    again = propose(engine, flow_run_id="run-2")  # a retry from another attempt
    assert again == first
    assert count(engine, Proposal) == 1
    assert actions(engine, proposal_subject(first.id)) == ["proposal.created"]
    (created,) = audit_records.audit_events(engine, proposal_subject(first.id))
    assert created.actor == "alice"
    assert created.flow_run_id == "run-1"
    assert created.details["buffer_hash"] == HASH_A


def test_record_proposal_refuses_other_content_under_same_key(engine: Engine) -> None:
    propose(engine)
    with pytest.raises(RecordsError, match="buffer_hash") as caught:
        propose(engine, buffer_hash=HASH_B)
    assert "a key must identify one proposal" in str(caught.value)
    assert count(engine, Proposal) == 1


def test_record_proposal_concurrent_retries_write_once(engine: Engine) -> None:
    results, errors = run_together(4, lambda: propose(engine))
    assert errors == []
    assert len({r.id for r in results}) == 1
    assert count(engine, Proposal) == 1
    assert actions(engine) == ["proposal.created"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"backend": "ledger"}, "backend must be one of"),
        ({"threshold": 4}, "more than the 3 members"),
        ({"threshold": 0}, "threshold must be at least 1"),
        ({"timelock_seconds": -1}, "timelock_seconds must be at least 0"),
        ({"members": []}, "members must not be empty"),
        ({"members": [MEMBERS[0], MEMBERS[0]]}, "more than once"),
        ({"buffer_hash": "xyz"}, "SHA-256 in hex"),
        ({"key": " "}, "key must not be empty"),
        ({"created_at": datetime(2025, 1, 1)}, "no timezone"),
    ],
)
def test_record_proposal_validates(engine: Engine, overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        propose(engine, **overrides)
    assert count(engine, Proposal) == 0
    assert count(engine, AuditEvent) == 0


def test_proposal_without_buffer_and_uppercase_hash(engine: Engine) -> None:
    p = propose(engine, kind="kill-switch-release", buffer=None, buffer_hash=None)
    assert p.buffer is None and p.buffer_hash is None
    q = propose(engine, key="upgrade-2", buffer_hash=HASH_A.upper())
    assert q.buffer_hash == HASH_A


# ------------------------------------------------------------------------- approvals


def test_duplicate_accepted_approval_is_refused_and_nothing_written(engine: Engine) -> None:
    p = propose(engine)
    first = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="approve", accepted=True, signature="sig1"
    )
    assert first.accepted and first.reason is None
    before_approvals, before_audit = count(engine, Approval), count(engine, AuditEvent)

    with pytest.raises(DuplicateApproval, match="already signed off") as caught:
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[0], decision="approve", accepted=True, signature="sig2"
        )
    assert MEMBERS[0] in str(caught.value)
    assert count(engine, Approval) == before_approvals
    assert count(engine, AuditEvent) == before_audit
    assert proposals_records.accepted_approvals(engine, p.id) == [first]


def test_refused_approvals_are_recorded_with_reason(engine: Engine) -> None:
    p = propose(engine)
    kept = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="approve", accepted=True, flow_run_id="run-1"
    )
    refusals = [
        proposals_records.record_approval(
            engine,
            p.id,
            member="not-a-pubkey!",
            decision="approve",
            accepted=False,
            reason="not a member of the multisig",
            comment="from the Slack modal",
        ),
        proposals_records.record_approval(
            engine,
            p.id,
            member="not-a-pubkey!",
            decision="approve",
            accepted=False,
            reason="not a member of the multisig",
        ),
        proposals_records.record_approval(
            engine,
            p.id,
            member=MEMBERS[0],
            decision="approve",
            accepted=False,
            reason="duplicate: already approved",
        ),
    ]
    assert [r.member for r in refusals] == ["not-a-pubkey!", "not-a-pubkey!", MEMBERS[0]]
    assert all(not r.accepted and r.reason for r in refusals)
    assert refusals[0].comment == "from the Slack modal"
    assert proposals_records.accepted_approvals(engine, p.id) == [kept]
    assert proposals_records.approvals(engine, p.id) == [kept, *refusals]
    events = audit_records.audit_events(engine, proposal_subject(p.id))
    assert [e.action for e in events] == [
        "proposal.created",
        "approval.accepted",
        "approval.refused",
        "approval.refused",
        "approval.refused",
    ]
    assert events[2].actor == "not-a-pubkey!"
    assert events[2].details["reason"] == "not a member of the multisig"


def test_refused_approval_needs_a_reason(engine: Engine) -> None:
    p = propose(engine)
    with pytest.raises(InputError, match="needs a reason"):
        proposals_records.record_approval(
            engine, p.id, member="x", decision="approve", accepted=False
        )
    with pytest.raises(InputError, match="decision must be one of"):
        proposals_records.record_approval(engine, p.id, member="x", decision="maybe", accepted=True)
    assert count(engine, Approval) == 0


def test_rejection_counts_once_per_member_too(engine: Engine) -> None:
    p = propose(engine)
    proposals_records.record_approval(
        engine, p.id, member=MEMBERS[1], decision="reject", accepted=True
    )
    with pytest.raises(DuplicateApproval):
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[1], decision="approve", accepted=True
        )


def test_concurrent_duplicate_approvals_accept_one(engine: Engine) -> None:
    p = propose(engine)
    results, errors = run_together(
        4,
        lambda: proposals_records.record_approval(
            engine, p.id, member=MEMBERS[2], decision="approve", accepted=True
        ),
    )
    assert len(results) == 1
    assert len(errors) == 3 and all(isinstance(e, DuplicateApproval) for e in errors)
    assert len(proposals_records.accepted_approvals(engine, p.id)) == 1
    assert actions(engine, proposal_subject(p.id)).count("approval.accepted") == 1


def test_db_level_unique_guard_on_accepted_approvals(engine: Engine) -> None:
    p = propose(engine)

    def row(member: str, accepted: bool) -> Approval:
        return Approval(
            proposal_id=p.id,
            member=member,
            decision="approve",
            accepted=accepted,
            reason=None if accepted else "refused",
            created_at=T0,
        )

    # Allowed by the index: repeated refusals, a refusal next to an acceptance, and
    # acceptances by different members.
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                row(MEMBERS[0], True),
                row(MEMBERS[0], False),
                row(MEMBERS[0], False),
                row(MEMBERS[1], True),
            ]
        )

    # Refused by the database itself, bypassing the repository's own check.
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        session.add(row(MEMBERS[0], True))
    assert len(proposals_records.accepted_approvals(engine, p.id)) == 2


def test_no_accepted_approval_on_a_closed_proposal(engine: Engine) -> None:
    p = propose(engine)
    proposals_records.set_proposal_status(
        engine, p.id, "cancelled", actor="oncall", reason="wrong buffer"
    )
    with pytest.raises(ProposalClosed, match="cancelled"):
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[0], decision="approve", accepted=True
        )
    refused = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="approve", accepted=False, reason="closed"
    )
    assert not refused.accepted


# ----------------------------------------------------------- status and threshold


def test_mark_threshold_met_keeps_the_first_time(engine: Engine) -> None:
    p = propose(engine)
    first = proposals_records.mark_threshold_met(engine, p.id, T0, flow_run_id="run-1")
    assert first.threshold_met_at == T0
    assert first.status == "approved"
    assert first.timelock_ends_at == T0 + timedelta(hours=1)

    later = proposals_records.mark_threshold_met(engine, p.id, T0 + timedelta(minutes=5))
    assert later.threshold_met_at == T0
    assert proposals_records.get_proposal(engine, p.id) == first
    assert actions(engine, proposal_subject(p.id)).count("proposal.threshold_met") == 1


def test_concurrent_mark_threshold_met_keeps_one_time(engine: Engine) -> None:
    p = propose(engine)
    times = iter([T0 + timedelta(seconds=i) for i in range(4)])
    lock = threading.Lock()

    def mark() -> proposals_records.ProposalRecord:
        with lock:
            at = next(times)
        return proposals_records.mark_threshold_met(engine, p.id, at)

    results, errors = run_together(4, mark)
    assert errors == []
    stored = proposals_records.get_proposal(engine, p.id)
    assert stored is not None
    assert {r.threshold_met_at for r in results} == {stored.threshold_met_at}
    assert actions(engine, proposal_subject(p.id)).count("proposal.threshold_met") == 1


def test_set_proposal_status(engine: Engine) -> None:
    p = propose(engine)
    approved = proposals_records.set_proposal_status(
        engine, p.id, "approved", actor="oncall", threshold_met_at=T0, flow_run_id="run-9"
    )
    assert approved.status == "approved" and approved.threshold_met_at == T0
    # Same status, nothing new: a retry writes nothing.
    assert proposals_records.set_proposal_status(engine, p.id, "approved") == approved
    # The first threshold time stays.
    again = proposals_records.set_proposal_status(
        engine, p.id, "approved", threshold_met_at=T0 + timedelta(hours=1)
    )
    assert again.threshold_met_at == T0

    executed = proposals_records.set_proposal_status(engine, p.id, "executed")
    assert executed.executed_at is not None and executed.closed
    with pytest.raises(ProposalClosed, match="executed already"):
        proposals_records.set_proposal_status(engine, p.id, "cancelled")
    with pytest.raises(InputError, match="status must be one of"):
        proposals_records.set_proposal_status(engine, p.id, "done")
    with pytest.raises(RecordsError, match="no proposal"):
        proposals_records.set_proposal_status(engine, p.id + 1000, "approved")

    statuses = audit_records.audit_events(engine, proposal_subject(p.id), action="proposal.status")
    assert [(e.details["from"], e.details["to"]) for e in statuses] == [
        ("proposed", "approved"),
        ("approved", "executed"),
    ]
    assert statuses[0].actor == "oncall" and statuses[0].flow_run_id == "run-9"


def test_mark_threshold_met_on_closed_proposal(engine: Engine) -> None:
    p = propose(engine)
    proposals_records.set_proposal_status(engine, p.id, "rejected")
    with pytest.raises(ProposalClosed):
        proposals_records.mark_threshold_met(engine, p.id, T0)


def test_set_onchain_address_is_idempotent(engine: Engine) -> None:
    p = propose(engine)
    a = proposals_records.set_onchain_address(engine, p.id, "PropAcct111")
    assert proposals_records.set_onchain_address(engine, p.id, "PropAcct111") == a
    with pytest.raises(RecordsError, match="already recorded at PropAcct111"):
        proposals_records.set_onchain_address(engine, p.id, "Other111")
    assert actions(engine, proposal_subject(p.id)).count("proposal.onchain_address") == 1


# ------------------------------------------------------------------------ executions


def test_record_execution_is_idempotent_per_proposal(engine: Engine) -> None:
    p = propose(engine)
    proposals_records.mark_threshold_met(engine, p.id, T0)
    done_at = T0 + timedelta(hours=2)
    first = proposals_records.record_execution(
        engine,
        p.id,
        outcome="upgraded",
        signature="5sig",
        old_hash=HASH_B,
        new_hash=HASH_A,
        slot_before=100,
        slot_after=103,
        at=done_at,
        flow_run_id="run-1",
    )
    retry = proposals_records.record_execution(engine, p.id, outcome="already-applied", at=T0)
    assert retry == first
    assert proposals_records.get_execution(engine, p.id) == first
    stored = proposals_records.get_proposal(engine, p.id)
    assert stored is not None
    assert stored.status == "executed" and stored.executed_at == done_at
    events = audit_records.audit_events(engine, proposal_subject(p.id), action="execution.recorded")
    assert len(events) == 1
    assert events[0].details["from"] == "approved" and events[0].details["to"] == "executed"


def test_failed_execution_fails_the_proposal(engine: Engine) -> None:
    p = propose(engine)
    e = proposals_records.record_execution(
        engine, p.id, outcome="failed", detail="AccountDataTooSmall"
    )
    assert e.signature is None and e.detail == "AccountDataTooSmall"
    stored = proposals_records.get_proposal(engine, p.id)
    assert stored is not None and stored.status == "failed" and stored.executed_at is None


def test_concurrent_record_execution_writes_once(engine: Engine) -> None:
    p = propose(engine)
    results, errors = run_together(
        4, lambda: proposals_records.record_execution(engine, p.id, outcome="already-applied")
    )
    assert errors == []
    assert len({r.id for r in results}) == 1
    assert actions(engine, proposal_subject(p.id)).count("execution.recorded") == 1


# ----------------------------------------------------------------------------- audit


def test_audit_rows_share_the_transaction_of_their_change(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _base._write_audit

    def write_then_fail(*args: Any, **kwargs: Any) -> AuditEvent:
        real(*args, **kwargs)
        raise RuntimeError("crash after the audit row was added")

    # record_proposal writes through insert_once (in _base), set_proposal_status directly.
    monkeypatch.setattr(_base, "_write_audit", write_then_fail)
    with pytest.raises(RuntimeError):
        propose(engine)
    # Neither the proposal nor its audit row survived the rollback.
    assert count(engine, Proposal) == 0
    assert count(engine, AuditEvent) == 0

    monkeypatch.setattr(_base, "_write_audit", real)
    p = propose(engine)
    monkeypatch.setattr(proposals_records, "_write_audit", write_then_fail)
    with pytest.raises(RuntimeError):
        proposals_records.set_proposal_status(engine, p.id, "cancelled")
    with pytest.raises(RuntimeError):
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[0], decision="approve", accepted=True
        )
    with pytest.raises(RuntimeError):
        proposals_records.record_execution(engine, p.id, outcome="upgraded")
    stored = proposals_records.get_proposal(engine, p.id)
    assert stored is not None and stored.status == "proposed"
    assert count(engine, Approval) == 0
    assert proposals_records.get_execution(engine, p.id) is None
    assert actions(engine) == ["proposal.created"]


def test_audit_and_audit_events(engine: Engine) -> None:
    first = audit_records.audit(
        engine, "oncall", "health.checked", "program:localnet:P", {"ok": True}, "run-3"
    )
    audit_records.audit(engine, "oncall", "notify.sent", "program:localnet:P", {"channel": "#ops"})
    audit_records.audit(engine, "bob", "health.checked", "program:devnet:Q")
    assert first.details == {"ok": True} and first.flow_run_id == "run-3"
    assert actions(engine, "program:localnet:P") == ["health.checked", "notify.sent"]
    assert len(audit_records.audit_events(engine, action="health.checked")) == 2
    newest = audit_records.audit_events(engine, limit=2)
    assert [e.action for e in newest] == ["notify.sent", "health.checked"]
    with pytest.raises(InputError, match="not JSON-serialisable"):
        audit_records.audit(engine, "a", "b", "c", {"when": object()})
    assert count(engine, AuditEvent) == 3


# ---------------------------------------------------------------------- program hash


def test_program_hash_upsert(engine: Engine) -> None:
    assert health_records.get_program_hash(engine, "localnet", "Prog1") is None
    first = health_records.set_program_hash(engine, "localnet", "Prog1", HASH_A, 10, recorded_at=T0)
    assert health_records.get_program_hash(engine, "localnet", "Prog1") == first
    # The same observation again writes nothing (daily health checks).
    assert health_records.set_program_hash(engine, "localnet", "Prog1", HASH_A, 10) == first
    changed = health_records.set_program_hash(engine, "localnet", "Prog1", HASH_B.upper(), 20)
    assert changed.hash == HASH_B and changed.slot == 20
    health_records.set_program_hash(engine, "devnet", "Prog1", HASH_A, 5)
    assert health_records.get_program_hash(engine, "localnet", "Prog1") == changed
    events = audit_records.audit_events(engine, records.program_subject("localnet", "Prog1"))
    assert [e.details["previous"] for e in events] == [None, {"hash": HASH_A, "slot": 10}]
    with pytest.raises(InputError):
        health_records.set_program_hash(engine, "localnet", "Prog1", "zz", 1)


def test_concurrent_program_hash_inserts(engine: Engine) -> None:
    results, errors = run_together(
        4, lambda: health_records.set_program_hash(engine, "localnet", "Race1", HASH_A, 7)
    )
    assert errors == []
    assert len({(r.hash, r.slot) for r in results}) == 1
    assert (
        len(audit_records.audit_events(engine, records.program_subject("localnet", "Race1"))) == 1
    )


def test_a_member_who_approved_may_still_cancel(engine: Engine) -> None:
    """The veto during the timelock: an accepted cancel after the member's own approval."""
    p = propose(engine)
    proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="approve", accepted=True
    )
    cancel = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="cancel", accepted=True, comment="bad hash"
    )
    assert cancel.accepted and cancel.decision == "cancel"
    # Still one approve or reject per member.
    with pytest.raises(DuplicateApproval):
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[0], decision="reject", accepted=True
        )
    assert [a.decision for a in proposals_records.accepted_approvals(engine, p.id)] == [
        "approve",
        "cancel",
    ]

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from solders.keypair import Keypair

from runbooks import approval, signoff
from runbooks.approval import ApprovalSubject
from runbooks.errors import ApprovalError, ProposalClosed, TimelockActive
from runbooks.policy import Policy

MEMBERS = [Keypair() for _ in range(3)]
POLICY = Policy(
    name="ops",
    members=tuple(str(m.pubkey()) for m in MEMBERS),
    threshold=2,
    timelock_seconds=10,
    min_timelock_seconds=0,
)
SUBJECT = ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal="1",
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256="cd" * 32,
)


def sign(member: Keypair, action: str = "approve", subject: ApprovalSubject = SUBJECT) -> str:
    return str(approval.sign(member, subject.message(action)))  # type: ignore[arg-type]


def review(member: str, signature: str, decision: str = "approve", already=()) -> signoff.Verdict:
    return signoff.review(SUBJECT, POLICY, member, signature, decision, already)  # type: ignore[arg-type]


def test_a_member_signature_is_accepted() -> None:
    verdict = review(str(MEMBERS[0].pubkey()), sign(MEMBERS[0]))
    assert verdict.accepted and verdict.reason is None


def test_a_rejection_needs_a_signature_over_the_reject_message() -> None:
    member = str(MEMBERS[1].pubkey())
    assert review(member, sign(MEMBERS[1], "reject"), "reject").accepted
    assert not review(member, sign(MEMBERS[1], "approve"), "reject").accepted


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("malformed pubkey", "not a base58 public key"),
        ("non-member", "is not a member"),
        ("duplicate", "already signed off"),
        ("other proposal", "signature is not"),
        ("malformed signature", "not a base58 ed25519 signature"),
        ("someone else's signature", "signature is not"),
    ],
)
def test_refusals_say_why(case: str, reason: str) -> None:
    outsider = Keypair()
    m0 = str(MEMBERS[0].pubkey())
    other = ApprovalSubject(**{**SUBJECT.__dict__, "proposal": "2"})
    args = {
        "malformed pubkey": ("0xdeadbeef", sign(MEMBERS[0]), ()),
        "non-member": (str(outsider.pubkey()), sign(outsider), ()),
        "duplicate": (m0, sign(MEMBERS[0]), (m0,)),
        "other proposal": (m0, sign(MEMBERS[0], subject=other), ()),
        "malformed signature": (m0, "not-a-signature", ()),
        "someone else's signature": (m0, sign(MEMBERS[1]), ()),
    }[case]
    verdict = review(args[0], args[1], already=args[2])
    assert not verdict.accepted
    assert reason in (verdict.reason or "")


def test_check_executable() -> None:
    now = datetime.now(UTC)
    ok = {"proposal_id": 1, "status": "approved", "approvals": 2, "threshold": 2, "now": now}
    signoff.check_executable(**ok, timelock_ends_at=now - timedelta(seconds=1))
    with pytest.raises(TimelockActive) as info:
        signoff.check_executable(**ok, timelock_ends_at=now + timedelta(seconds=30))
    assert 29 <= info.value.seconds_left <= 30
    with pytest.raises(ApprovalError, match="1 of 2 approvals"):
        signoff.check_executable(**{**ok, "approvals": 1}, timelock_ends_at=None)
    with pytest.raises(ProposalClosed, match="cancelled"):
        signoff.check_executable(**{**ok, "status": "cancelled"}, timelock_ends_at=now)

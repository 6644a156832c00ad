"""Sign-offs made with @solana/kit, reviewed as the flows review them: kit's standard
envelope over the approval line (zero application domain, the member as the one signer)
is accepted and recorded as "standard"; every other kit envelope, and the same signature
over another proposal's line, is refused with its reason and counts for nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine

from core.approval import ZERO_DOMAIN, ApprovalSubject
from domain import signoff
from domain.policy import Policy
from programs.upgrade_manager.sandbox import DEVNET_GENESIS, MAINNET_GENESIS
from store.records import proposals as proposals_records
from tests.kit import kit_sign, require_node_clients

MEMBER, OTHER_MEMBER, OUTSIDER = Keypair(), Keypair(), Keypair()
GOVERNANCE = Keypair().pubkey()
SUBJECT = ApprovalSubject(
    governance=str(GOVERNANCE),
    proposal="4",
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256="9a" * 32,
    cluster=MAINNET_GENESIS,
)
POLICY = Policy(
    name="ops",
    members=(str(MEMBER.pubkey()), str(OTHER_MEMBER.pubkey())),
    threshold=1,
    timelock_seconds=0,
    min_timelock_seconds=0,
)


@pytest.fixture(autouse=True)
def _kit() -> None:
    require_node_clients()


def review(
    signature: str,
    member: Keypair = MEMBER,
    subject: ApprovalSubject = SUBJECT,
    domains: tuple[bytes, ...] = (ZERO_DOMAIN,),
) -> signoff.Verdict:
    return signoff.review(subject, POLICY, str(member.pubkey()), signature, "approve", (), domains)


def test_kits_standard_signature_is_accepted_and_recorded_as_standard(engine: Engine) -> None:
    _, signature = kit_sign(SUBJECT.message(), MEMBER)
    verdict = review(str(signature))
    assert verdict.accepted, verdict.reason
    assert verdict.envelope == "standard" and verdict.form is not None
    assert verdict.form.application_domain == ZERO_DOMAIN

    proposal = proposals_records.record_proposal(
        engine,
        key="kit-1",
        kind="upgrade",
        cluster="localnet",
        backend="keypair",
        governance=POLICY.name,
        program_id=SUBJECT.program,
        buffer=SUBJECT.buffer,
        buffer_hash=SUBJECT.sha256,
        description="v2",
        proposer="alice",
        members=list(POLICY.members),
        threshold=1,
        timelock_seconds=0,
    )
    # As flows/_signoff.review_signoff records a verdict.
    proposals_records.record_approval(
        engine,
        proposal.id,
        member=verdict.member,
        decision=verdict.decision,
        accepted=verdict.accepted,
        signature=str(signature),
        reason=verdict.reason,
        envelope=verdict.envelope,
    )
    [kept] = proposals_records.accepted_approvals(engine, proposal.id)
    assert (kept.member, kept.envelope) == (str(MEMBER.pubkey()), "standard")


def test_the_governance_as_application_domain_counts_only_where_allowed() -> None:
    _, signature = kit_sign(SUBJECT.message(), MEMBER, application_domain=bytes(GOVERNANCE))
    refused = review(str(signature))
    assert not refused.accepted and refused.envelope is None
    assert "application domain: zero" in (refused.reason or "")
    allowed = review(str(signature), domains=(ZERO_DOMAIN, bytes(GOVERNANCE)))
    assert allowed.accepted and allowed.form is not None
    assert allowed.form.application_domain == bytes(GOVERNANCE)


# Each: what kit is asked to build, all signed by MEMBER's key over the right line.
REFUSED: dict[str, dict[str, object]] = {
    "another application domain": {"application_domain": bytes(Keypair().pubkey())},
    "two required signatories": {
        "signatories": sorted([MEMBER.pubkey(), OTHER_MEMBER.pubkey()], key=bytes)
    },
    "the member second of two": {
        "signatories": [OUTSIDER.pubkey(), MEMBER.pubkey()],
    },
    "another signer named": {"signatories": [OTHER_MEMBER.pubkey()]},
    "off-chain message v1": {"version": 1},
    "v1 with two signatories": {"version": 1, "signatories": [MEMBER.pubkey(), OUTSIDER.pubkey()]},
    "UTF-8 format": {"format": 1},
    "long UTF-8 format": {"format": 2},
}


@pytest.mark.parametrize("options", REFUSED.values(), ids=REFUSED.keys())
def test_kit_envelopes_other_than_the_standard_one_are_refused(
    options: dict[str, object],
) -> None:
    kit_bytes, signature = kit_sign(SUBJECT.message(), MEMBER, **options)  # type: ignore[arg-type]
    assert signature.verify(MEMBER.pubkey(), kit_bytes)  # a real signature, just not a sign-off
    verdict = review(str(signature))
    assert not verdict.accepted and verdict.form is None and verdict.envelope is None
    assert f"signature is not {MEMBER.pubkey()}'s over this proposal's" in (verdict.reason or "")


def test_another_keys_kit_signature_is_not_the_members() -> None:
    _, signature = kit_sign(SUBJECT.message(), OTHER_MEMBER)  # the other member's own envelope
    verdict = review(str(signature), member=MEMBER)
    assert not verdict.accepted
    assert f"signature is not {MEMBER.pubkey()}'s" in (verdict.reason or "")


OTHER_LINES: dict[str, Callable[[ApprovalSubject], ApprovalSubject]] = {
    "another proposal": lambda s: dataclasses.replace(s, proposal="5"),
    "another buffer": lambda s: dataclasses.replace(s, buffer=str(Pubkey.new_unique())),
    "another governance": lambda s: dataclasses.replace(s, governance=str(Pubkey.new_unique())),
    # The same upgrade signed for devnet does not count on mainnet.
    "another cluster": lambda s: dataclasses.replace(s, cluster=DEVNET_GENESIS),
}


@pytest.mark.parametrize("other", OTHER_LINES.values(), ids=OTHER_LINES.keys())
def test_kits_signature_over_one_line_never_counts_for_another(
    other: Callable[[ApprovalSubject], ApprovalSubject],
) -> None:
    elsewhere = other(SUBJECT)
    assert elsewhere.message() != SUBJECT.message()
    _, signature = kit_sign(elsewhere.message(), MEMBER)
    assert review(str(signature), subject=elsewhere).accepted  # good where it was given
    verdict = review(str(signature))
    assert not verdict.accepted and verdict.envelope is None
    assert "over this proposal's" in (verdict.reason or "")

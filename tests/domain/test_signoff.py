from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from solders.keypair import Keypair

from core import approval
from core.approval import ApprovalSubject
from core.errors import ApprovalError, ProposalClosed, TimelockActive
from domain import signoff, veto
from domain.policy import Member, Policy

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
    cluster="5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
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


def test_a_devnet_signature_never_counts_for_the_mainnet_proposal() -> None:
    """Same keys, program, buffer and hash on both clusters: only the genesis differs."""
    devnet = ApprovalSubject(
        **{**SUBJECT.__dict__, "cluster": "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"}
    )
    m0 = str(MEMBERS[0].pubkey())
    verdict = review(m0, sign(MEMBERS[0], subject=devnet))
    assert not verdict.accepted and "signature is not" in (verdict.reason or "")
    accepted = review(m0, sign(MEMBERS[0]))
    assert accepted.accepted and accepted.form == approval.STANDARD


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


NAMED = Policy(
    name="ops",
    members=POLICY.members,
    threshold=2,
    timelock_seconds=10,
    profiles=(
        Member(name="Alice", pubkey=POLICY.members[0], slack_user_id="U0ALICE"),
        Member(name="Bob", pubkey=POLICY.members[1]),
    ),
)


def form(**overrides) -> str:
    fields = {
        "proposal_id": 7,  # the records id; the on-chain index below is 1
        "subject": SUBJECT,
        "description": "v2: faster swaps",
        "proposer": "carol",
        "cluster": "mainnet-beta",
        "threshold": 2,
        "members": list(NAMED.members),
        "approved_by": [NAMED.members[0]],
        "rpc_url": "https://rpc.example",
        "label": NAMED.label,
        **overrides,
    }
    return signoff.form_description(**fields)


def test_the_form_opens_with_a_heading_naming_the_signed_proposal_number() -> None:
    text = form()
    assert text.splitlines()[0] == "# Sign off upgrade proposal 1"
    assert "**Proposal 1** (records #7)" in text
    assert "proposal #7" not in text and "proposal 7" not in text.lower().split("(records")[0]
    assert f"proposal: {SUBJECT.proposal};" in SUBJECT.message()  # the same number
    # The same number without a records note when they agree (keypair backend).
    assert "(records" not in form(proposal_id=1)
    assert form(kind="rollback").startswith("# Sign off rollback proposal 1")


def test_addresses_and_hash_each_have_a_line_of_their_own() -> None:
    lines = form().splitlines()
    for value in (SUBJECT.program, SUBJECT.buffer):
        assert f"`{value}`" in lines  # a whole line: nothing beside it to squeeze it
    # The hash in groups of 8 the dialog can wrap, on its own line, digits in order.
    [hash_line] = [line for line in lines if line.replace(" ", "") == f"`{SUBJECT.sha256}`"]
    assert all(len(group) <= 9 for group in hash_line.split(" "))
    assert not any(line.startswith("|") for line in lines)  # no table cells to cut it off


def test_the_form_names_who_signed_and_who_has_not() -> None:
    text = form()
    alice, bob, third = NAMED.members
    signed = next(line for line in text.splitlines() if line.startswith("**Signed so far:**"))
    missing = next(line for line in text.splitlines() if line.startswith("**Still to sign:**"))
    assert f"Alice ({alice[:4]}…{alice[-4:]})" in signed and "Bob" not in signed
    assert f"Bob ({bob[:4]}…{bob[-4:]})" in missing
    assert f"{third[:4]}…{third[-4:]}" in missing  # a nameless member: the short key


def test_the_form_shows_the_last_attempts_verdict() -> None:
    assert "Last sign-off" not in form()
    refused = signoff.Verdict(NAMED.members[1], "approve", False, "signature is not Bob's")
    assert "**Last sign-off: refused** — approve from Bob (" in form(last=refused)
    assert "signature is not Bob's" in form(last=refused)
    accepted = signoff.Verdict(NAMED.members[0], "approve", True)
    assert "**Last sign-off: accepted** — approve from Alice (" in form(last=accepted)
    # An accepted sign-off names the envelope the member's tool signed.
    for kind in (approval.STANDARD, approval.LEGACY):
        signed = signoff.Verdict(NAMED.members[0], "approve", True, form=kind)
        assert signed.envelope == kind.envelope
        alice = f"Alice ({NAMED.members[0][:4]}…{NAMED.members[0][-4:]})"
        assert f"from {alice} ({kind.envelope} envelope)." in form(last=signed)
    assert "envelope)." not in form(last=accepted)  # recorded before envelopes were kept


def test_the_forms_show_both_commands_and_which_tools_sign_which_envelope() -> None:
    message = SUBJECT.message()
    cancel = SUBJECT.message("cancel")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    timelock = veto.form_description(
        proposal_id=7,
        subject=SUBJECT,
        description="v2",
        proposer="carol",
        cluster="mainnet-beta",
        approved_by=[],
        executes_at=now + timedelta(hours=1),
        now=now,
    )
    for text, line in ((form(), message), (timelock, cancel)):
        assert f'runbooks sign --keypair ~/.config/solana/id.json --message "{line}"' in text
        assert f'solana sign-offchain-message -k ~/.config/solana/id.json "{line}"' in text
        note = next(row for row in text.splitlines() if "Both off-chain envelopes" in row)
        assert "Agave 3.x" in note and "Ledger" in note and "standard" in note
        assert "Agave 1.18/2.x" in note and "legacy" in note and "--legacy" in note


def test_the_sign_command_needs_no_records_database() -> None:
    assert f'--message "{SUBJECT.message()}"' in form()
    text = form(onchain_address="Prop1111", rpc_url="https://rpc.example")
    assert "runbooks sign --onchain-proposal Prop1111 --url https://rpc.example" in text
    assert "--proposal 7" not in text

"""The kill-switch release's own signed line, its review, its form, and the choice of line
by proposal kind (what `runbooks sign --proposal` prints)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from solders.keypair import Keypair

from core import approval
from core.approval import ApprovalSubject
from core.errors import InputError
from domain import signoff
from domain.kill_switch import (
    KillSwitchRelease,
    release_form_description,
    still_serving_warning,
)
from domain.policy import Policy
from flows._signoff import signing_subject
from store.records.kill_switch import KillSwitchRecord
from store.records.proposals import ProposalRecord

PROGRAM = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
HASH = "ab" * 32
MEMBERS = [Keypair() for _ in range(3)]


GENESIS = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"  # mainnet-beta


def proposal(kind: str, **fields: object) -> ProposalRecord:
    base: dict[str, object] = {
        "id": 7,
        "key": "k",
        "kind": kind,
        "cluster": "localnet",
        "backend": "onchain",
        "governance": "Gov1111111111111111111111111111111111111111",
        "program_id": PROGRAM,
        "buffer": "kill-switch-release",
        "buffer_hash": HASH,
        "description": "d",
        "proposer": "on-call",
        "members": tuple(str(m.pubkey()) for m in MEMBERS),
        "threshold": 2,
        "timelock_seconds": 0,
        "status": "proposed",
        "created_at": datetime.now(UTC),
        "threshold_met_at": None,
        "executed_at": None,
        "flow_run_id": None,
        "onchain_address": None,
        "genesis_hash": GENESIS,
    }
    base.update(fields)
    return ProposalRecord(**base)  # type: ignore[arg-type]


def policy() -> Policy:
    return Policy(
        name="p",
        members=tuple(str(m.pubkey()) for m in MEMBERS),
        threshold=2,
        timelock_seconds=0,
        min_timelock_seconds=0,
        backend="onchain",
    )


def test_the_release_line_names_the_switch_and_differs_from_an_upgrade() -> None:
    subject = KillSwitchRelease(GENESIS, PROGRAM, "7", HASH)
    assert subject.message("cancel") == (
        f"solana-runbooks v2; action: cancel; cluster: {GENESIS}; kill-switch: release; "
        f"program: {PROGRAM}; proposal: 7; sha256: {HASH}"
    )
    every = KillSwitchRelease(GENESIS, "*", "8", "none").message()
    assert "program: *; proposal: 8; sha256: none" in every
    with pytest.raises(InputError, match="action: 'execute' is not one of"):
        subject.message("execute")  # type: ignore[arg-type]


def test_review_refuses_an_upgrade_or_another_release_signature_with_its_reason() -> None:
    subject = KillSwitchRelease(GENESIS, PROGRAM, "7", HASH)
    upgrade = ApprovalSubject("Gov", "7", PROGRAM, "kill-switch-release", HASH, GENESIS).message()
    member = MEMBERS[0]
    for wrong in (upgrade, KillSwitchRelease(GENESIS, PROGRAM, "8", HASH).message()):
        verdict = signoff.review(
            subject,
            policy(),
            str(member.pubkey()),
            str(approval.sign(member, wrong)),
            "approve",
            (),
        )
        assert not verdict.accepted
        assert verdict.reason and "signature is not" in verdict.reason
    good = signoff.review(
        subject,
        policy(),
        str(member.pubkey()),
        str(approval.sign(member, subject.message())),
        "approve",
        (),
    )
    assert good.accepted


def test_signing_subject_picks_the_line_by_kind() -> None:
    release = signing_subject(proposal("kill-switch-release"))
    assert release == KillSwitchRelease(GENESIS, PROGRAM, "7", HASH)
    every = signing_subject(proposal("kill-switch-release", program_id="*", buffer_hash=None))
    assert every.message().endswith("program: *; proposal: 7; sha256: none")
    keypair_upgrade = signing_subject(proposal("upgrade", backend="keypair", buffer="Buf"))
    assert isinstance(keypair_upgrade, ApprovalSubject) and keypair_upgrade.buffer == "Buf"
    with pytest.raises(InputError, match='runbooks sign --message "<line>"'):
        signing_subject(proposal("set-authority"))


@pytest.mark.parametrize("kind", ["kill-switch-release", "upgrade"])
def test_a_proposal_recorded_without_its_genesis_hash_cannot_be_signed(kind: str) -> None:
    old = signing_subject(proposal(kind, genesis_hash=None, backend="keypair"))
    with pytest.raises(InputError, match="genesis hash; this proposal has none recorded"):
        old.message()


def test_the_release_form_says_what_is_signed_and_how() -> None:
    subject = KillSwitchRelease(GENESIS, PROGRAM, "7", HASH)
    line = subject.message()
    switch = KillSwitchRecord(
        cluster="localnet",
        program_id=PROGRAM,
        engaged=True,
        reason="exploit",
        actor="alice",
        changed_at=datetime.now(UTC),
        release_proposal_id=None,
        flow_run_id=None,
    )
    form = release_form_description(
        subject=subject,
        switch=switch,
        reason="patched",
        requested_by="bob",
        program_pause_block="localnet-pause",
        threshold=2,
        members=[str(m.pubkey()) for m in MEMBERS],
        approved_by=[],
        signing_section=signoff.signing_section(
            members=[str(m.pubkey()) for m in MEMBERS],
            approved_by=[],
            message=line,
            sign_command=f'runbooks sign --keypair ~/.config/solana/id.json --message "{line}"',
        ),
    )
    assert f"You are signing the release of the kill switch of `{PROGRAM}` on localnet" in form
    assert (
        f'--message "{line}"' in form
        and f'solana sign-offchain-message -k ~/.config/solana/id.json "{line}"' in form
    )
    assert "exploit" in form and "localnet-pause" in form and "0 of 2 needed" in form
    assert f"| Release proposal | #7 |\n|---|---|\n| Cluster | {GENESIS} |\n" in form


def test_the_still_serving_warning_says_how_to_add_a_pause() -> None:
    text = still_serving_warning("*")
    assert text.startswith("every program is STILL SERVING USERS")
    assert "Program Pause" in text and "program_pause_block" in text

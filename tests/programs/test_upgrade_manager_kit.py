"""upgrade_manager against a second implementation of the off-chain message: signatures
made by @solana/kit (run under node) over the line the program rebuilds.

The precompile verifies kit's signature over kit's envelope bytes; the program must accept
the standard form kit signs for the member (zero application domain, the member as its one
signer) and refuse kit's other spellings and the same member's signature over the devnet
line on a mainnet governance, changing nothing.
"""

from __future__ import annotations

import dataclasses

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.signature import Signature

from programs.upgrade_manager import client
from programs.upgrade_manager.client import UpgradeManagerError as E
from programs.upgrade_manager.sandbox import (
    DEVNET_GENESIS,
    MAINNET_GENESIS,
    Sandbox,
    new_sandbox,
    vault_so,
)
from tests.kit import kit_sign


@pytest.fixture
def box() -> Sandbox:
    return new_sandbox(genesis=MAINNET_GENESIS)


@pytest.fixture
def proposed(box: Sandbox) -> int:
    return box.propose_upgrade(box.write_buffer(vault_so(2)))


def relay(box: Sandbox, index: int, member: Keypair, envelope: bytes, sig: Signature) -> object:
    ixs = [
        client.ed25519_instruction(member.pubkey(), sig, envelope),
        client.vote(box.governance, box.proposal_account(index), "approve"),
    ]
    return box.send(ixs)


def test_kits_standard_signature_over_the_line_approves_on_chain(
    box: Sandbox, proposed: int
) -> None:
    member = box.members[0]
    line = client.approval_text(box.governance, box.proposal(proposed), "approve")
    assert f"cluster: {MAINNET_GENESIS};" in line
    envelope, signature = kit_sign(line, member)
    sent = relay(box, proposed, member, envelope, signature)
    assert sent.ok, sent.logs
    assert box.proposal(proposed).approvals == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"application_domain": bytes(range(32))}, E.EnvelopeApplicationDomain),
        ({"version": 1}, E.MessageMismatch),
    ],
    ids=["another-application-domain", "kit-v1"],
)
def test_kits_other_spellings_are_refused_and_change_nothing(
    box: Sandbox, proposed: int, options: dict[str, object], error: E
) -> None:
    member = box.members[0]
    line = client.approval_text(box.governance, box.proposal(proposed), "approve")
    envelope, signature = kit_sign(line, member, **options)  # type: ignore[arg-type]
    before = box.data(box.proposal_account(proposed))
    sent = relay(box, proposed, member, envelope, signature)
    assert sent.custom_code == error, sent.logs
    assert box.data(box.proposal_account(proposed)) == before


def test_kits_two_signatory_envelope_is_refused(box: Sandbox, proposed: int) -> None:
    member, other = box.members[0], box.members[1]
    line = client.approval_text(box.governance, box.proposal(proposed), "approve")
    envelope, signature = kit_sign(line, member, signatories=[member.pubkey(), other.pubkey()])
    before = box.data(box.proposal_account(proposed))
    sent = relay(box, proposed, member, envelope, signature)
    assert sent.custom_code == E.EnvelopeSignerCount, sent.logs
    assert box.data(box.proposal_account(proposed)) == before


def test_kits_signature_over_the_devnet_line_is_refused_on_mainnet(
    box: Sandbox, proposed: int
) -> None:
    """Same keys, program and bytes on both clusters: only the genesis hash differs."""
    member = box.members[0]
    mainnet = box.proposal(proposed)
    devnet = dataclasses.replace(mainnet, genesis_hash=bytes(Hash.from_string(DEVNET_GENESIS)))
    devnet_line = client.approval_text(box.governance, devnet, "approve")
    assert devnet_line.replace(DEVNET_GENESIS, MAINNET_GENESIS) == client.approval_text(
        box.governance, mainnet, "approve"
    )
    envelope, signature = kit_sign(devnet_line, member)
    before = box.data(box.proposal_account(proposed))
    sent = relay(box, proposed, member, envelope, signature)
    assert sent.custom_code == E.MessageMismatch, sent.logs
    assert box.data(box.proposal_account(proposed)) == before

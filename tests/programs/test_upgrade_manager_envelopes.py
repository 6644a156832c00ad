"""upgrade_manager accepts a relayed sign-off in both off-chain envelopes members' tools
sign (standard v0 of current CLIs, Ledger and @solana/kit; legacy of older CLIs), and
refuses every other spelling with its own error, changing nothing.

Each malformed envelope here is really signed by the member's key, so the precompile
verifies it; the program is what must refuse it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from solders.hash import Hash
from solders.keypair import Keypair

from core.approval import LEGACY, STANDARD, SignedForm
from programs.upgrade_manager import client
from programs.upgrade_manager.client import ProposalStatus
from programs.upgrade_manager.client import UpgradeManagerError as E
from programs.upgrade_manager.sandbox import (
    DEVNET_GENESIS,
    MAINNET_GENESIS,
    Sandbox,
    new_sandbox,
    vault_so,
)


@pytest.fixture
def box() -> Sandbox:
    return new_sandbox()


@pytest.fixture
def proposed(box: Sandbox) -> int:
    return box.propose_upgrade(box.write_buffer(vault_so(2)))


def relay_bytes(box: Sandbox, index: int, member: Keypair, signed: bytes) -> object:
    """Relay ``member``'s real signature over ``signed`` as an approval of ``index``."""
    ixs = [
        client.ed25519_instruction(member.pubkey(), member.sign_message(signed), signed),
        client.vote(box.governance, box.proposal_account(index), "approve"),
    ]
    return box.send(ixs)


def standard(
    text: bytes,
    *,
    domain: bytes = bytes(32),
    fmt: int = 0,
    signers: list[bytes],
    length: int | None = None,
    version: int = 0,
) -> bytes:
    n = len(text) if length is None else length
    return (
        b"\xffsolana offchain"
        + bytes([version])
        + domain
        + bytes([fmt, len(signers)])
        + b"".join(signers)
        + n.to_bytes(2, "little")
        + text
    )


@pytest.mark.parametrize(
    "form",
    [STANDARD, LEGACY, "governance-domain"],
    ids=["standard, zero domain", "legacy", "standard, governance domain"],
)
def test_each_accepted_envelope_counts(box: Sandbox, proposed: int, form: object) -> None:
    if form == "governance-domain":
        form = SignedForm("standard", bytes(box.governance))
    assert isinstance(form, SignedForm)
    member = box.members[0]
    assert box.relay(proposed, member, form=form).ok
    assert box.proposal(proposed).approvals == 1


Build = Callable[[bytes, bytes, bytes, bytes], bytes]  # text, member, other, governance

MALFORMED: dict[str, tuple[Build, E]] = {
    "two signers": (
        lambda t, me, other, g: standard(t, signers=[me, other]),
        E.EnvelopeSignerCount,
    ),
    "no signer": (lambda t, me, other, g: standard(t, signers=[]), E.EnvelopeSignerCount),
    "another key as signer": (
        lambda t, me, other, g: standard(t, signers=[other]),
        E.EnvelopeSigner,
    ),
    "format 1 (UTF-8)": (
        lambda t, me, other, g: standard(t, fmt=1, signers=[me]),
        E.EnvelopeFormat,
    ),
    "another application domain": (
        lambda t, me, other, g: standard(t, domain=b"\x01" * 32, signers=[me]),
        E.EnvelopeApplicationDomain,
    ),
    "length one more than the text": (
        lambda t, me, other, g: standard(t, signers=[me], length=len(t) + 1),
        E.EnvelopeLength,
    ),
    "length and text cut short": (
        lambda t, me, other, g: standard(t[:-1], signers=[me]),
        E.EnvelopeLength,
    ),
    "trailing bytes after the text": (
        lambda t, me, other, g: standard(t, signers=[me]) + b"x",
        E.EnvelopeLength,
    ),
    "envelope version 1": (
        lambda t, me, other, g: standard(t, signers=[me], version=1),
        E.MessageMismatch,
    ),
    "another proposal's text": (
        lambda t, me, other, g: standard(t.replace(b"proposal: 1;", b"proposal: 2;"), signers=[me]),
        E.MessageMismatch,
    ),
    "legacy header with another text": (
        lambda t, me, other, g: (
            b"\xffsolana offchain\x00\x00" + (len(t) - 1).to_bytes(2, "little") + t[:-1]
        ),
        E.MessageMismatch,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_envelope_is_refused_and_changes_nothing(
    box: Sandbox, proposed: int, case: str
) -> None:
    build, code = MALFORMED[case]
    member, other = box.members[0], box.members[1]
    text = client.approval_text(box.governance, box.proposal(proposed)).encode()
    assert b"proposal: 1;" in text
    signed = build(text, bytes(member.pubkey()), bytes(other.pubkey()), bytes(box.governance))
    before = box.data(box.proposal_account(proposed))
    sent = relay_bytes(box, proposed, member, signed)
    assert not sent.ok
    assert sent.custom_code == code, sent.logs
    assert sent.failed_instruction == 1  # the precompile verified it; the program refused
    assert box.data(box.proposal_account(proposed)) == before
    # The same member's genuine sign-off still counts afterwards.
    assert box.relay(proposed, member).ok
    assert box.proposal(proposed).approvals == 1
    assert box.proposal(proposed).status == ProposalStatus.ACTIVE


def test_a_devnet_signature_is_refused_for_the_mainnet_proposal() -> None:
    """The same governance keys, program and buffer bytes on two clusters: the member's
    signature over the devnet proposal's line does not approve the mainnet one."""
    mainnet = new_sandbox(genesis=MAINNET_GENESIS)
    index = mainnet.propose_upgrade(mainnet.write_buffer(vault_so(2)))
    p = mainnet.proposal(index)
    assert p.cluster == MAINNET_GENESIS
    devnet_line = dataclasses.replace(p, genesis_hash=bytes(Hash.from_string(DEVNET_GENESIS)))
    member = mainnet.members[0]
    signed = client.approval_envelope(
        mainnet.governance, devnet_line, "approve", member.pubkey(), STANDARD
    )
    assert DEVNET_GENESIS.encode() in signed
    before = mainnet.data(mainnet.proposal_account(index))
    sent = relay_bytes(mainnet, index, member, signed)
    assert sent.custom_code == E.MessageMismatch
    assert mainnet.data(mainnet.proposal_account(index)) == before

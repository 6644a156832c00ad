"""The approval message and the off-chain envelope, checked against an independent build."""

from __future__ import annotations

import struct

import pytest
from solders.keypair import Keypair

from core import approval
from core.approval import ApprovalSubject
from core.errors import InputError, InvalidSignature

MAINNET = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"  # getGenesisHash of mainnet-beta
DEVNET = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"

SUBJECT = ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal="7",
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256="ab" * 32,
    cluster=MAINNET,
)


def stock_cli_envelope(message: str) -> bytes:
    """What `solana sign-offchain-message` signs (solana-offchain-message v0), written out
    from the specification rather than through the module under test."""
    body = message.encode()
    return b"\xffsolana offchain" + b"\x00" + b"\x00" + len(body).to_bytes(2, "little") + body


def test_message_names_everything_signed() -> None:
    text = SUBJECT.message("approve")
    for part in (SUBJECT.governance, SUBJECT.program, SUBJECT.buffer, SUBJECT.sha256):
        assert part in text
    assert "proposal: 7;" in text
    assert text.startswith(f"solana-runbooks v2; action: approve; cluster: {MAINNET}; governance:")
    assert all(0x20 <= ord(c) <= 0x7E for c in text)


def test_envelope_matches_the_offchain_format() -> None:
    message = SUBJECT.message()
    wrapped = approval.legacy_envelope(message)
    assert wrapped == stock_cli_envelope(message)
    assert wrapped[16:18] == b"\x00\x00"
    assert struct.unpack("<H", wrapped[18:20])[0] == len(message)


def test_a_stock_cli_signature_verifies() -> None:
    member = Keypair()
    message = SUBJECT.message()
    signature = member.sign_message(stock_cli_envelope(message))
    assert approval.verify(member.pubkey(), signature, message) == approval.LEGACY
    # ed25519 is deterministic
    assert approval.sign(member, message, approval.LEGACY) == signature


def standard_cli_envelope(message: str, signer: bytes, domain: bytes = bytes(32)) -> bytes:
    """What a current `solana sign-offchain-message` (Agave 3.x) signs: the standard v0
    envelope, spelled out from the specification."""
    body = message.encode()
    return (
        b"\xffsolana offchain" + b"\x00" + domain + b"\x00" + b"\x01" + signer
        + len(body).to_bytes(2, "little") + body
    )  # fmt: skip


def test_sign_makes_the_standard_envelope_of_current_clis_by_default() -> None:
    member = Keypair()
    message = SUBJECT.message()
    signature = member.sign_message(standard_cli_envelope(message, bytes(member.pubkey())))
    assert approval.sign(member, message) == signature
    assert approval.verify(member.pubkey(), signature, message) == approval.STANDARD


def test_the_governance_domain_counts_only_where_allowed() -> None:
    member, governance = Keypair(), bytes(Keypair().pubkey())
    message = SUBJECT.message()
    form = approval.SignedForm("standard", governance)
    signature = approval.sign(member, message, form)
    with pytest.raises(InvalidSignature):
        approval.verify(member.pubkey(), signature, message)
    domains = (approval.ZERO_DOMAIN, governance)
    assert approval.verify(member.pubkey(), signature, message, domains=domains) == form


@pytest.mark.parametrize(
    "malformed",
    [
        "two signers",
        "another signer",
        "format 1",
        "length + 1",
        "version 1",
    ],
)
def test_a_malformed_standard_envelope_is_refused(malformed: str) -> None:
    member, other = Keypair(), Keypair()
    message = SUBJECT.message()
    me, body = bytes(member.pubkey()), message.encode()
    head, length = b"\xffsolana offchain\x00" + bytes(32), len(body).to_bytes(2, "little")
    wrapped = {
        "two signers": head + b"\x00\x02" + me + bytes(other.pubkey()) + length + body,
        "another signer": head + b"\x00\x01" + bytes(other.pubkey()) + length + body,
        "format 1": head + b"\x01\x01" + me + length + body,
        "length + 1": head + b"\x00\x01" + me + (len(body) + 1).to_bytes(2, "little") + body,
        "version 1": b"\xffsolana offchain\x01" + bytes(32) + b"\x00\x01" + me + length + body,
    }[malformed]
    with pytest.raises(InvalidSignature, match="standard off-chain envelope"):
        approval.verify(member.pubkey(), member.sign_message(wrapped), message)


def test_signature_over_another_proposal_is_refused() -> None:
    member = Keypair()
    other = ApprovalSubject(**{**SUBJECT.__dict__, "proposal": "8"})
    signature = approval.sign(member, other.message())
    with pytest.raises(InvalidSignature, match="proposal"):
        approval.verify(member.pubkey(), signature, SUBJECT.message())


def test_signature_over_the_bare_message_is_refused() -> None:
    # The envelope is pinned: a signature over the raw text (no envelope) must not pass.
    member = Keypair()
    message = SUBJECT.message()
    with pytest.raises(InvalidSignature):
        approval.verify(member.pubkey(), member.sign_message(message.encode()), message)


def test_approve_and_reject_messages_differ() -> None:
    member = Keypair()
    signature = approval.sign(member, SUBJECT.message("reject"))
    with pytest.raises(InvalidSignature):
        approval.verify(member.pubkey(), signature, SUBJECT.message("approve"))


@pytest.mark.parametrize("text", ["", "caf\u00e9", "line\nbreak", "x" * 1180])
def test_non_restricted_ascii_is_refused(text: str) -> None:
    with pytest.raises(InputError):
        approval.envelope(text)


def test_unknown_action_is_refused() -> None:
    with pytest.raises(InputError, match="action"):
        SUBJECT.message("execute")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cut", "complaint"),
    [
        (lambda line: line[:-10], "sha256: .* is 54 characters, not 64"),
        (
            lambda line: line[: line.index("; buffer")],
            "no buffer:, sha256: field: it looks cut off",
        ),
        (lambda line: line[: line.index("; buffer") + 3], "is not 'name: value'"),
        (lambda line: line.replace("buffer: ", "buffer: x"), "buffer: .* not a base58"),
        (lambda line: line.replace("proposal: 4", "proposal: four"), "not a number"),
        (lambda line: line.replace("action: approve", "action: yes"), "action: 'yes'"),
        (lambda line: "Sign off upgrade proposal 4", "not an approval line"),
    ],
)
def test_a_pasted_line_is_checked_before_signing(cut, complaint: str) -> None:
    subject = ApprovalSubject(
        governance=str(Keypair().pubkey()), proposal="4", program=str(Keypair().pubkey()),
        buffer=str(Keypair().pubkey()), sha256="ef" * 32, cluster=MAINNET,
    )  # fmt: skip
    line = subject.message("approve")
    assert approval.check_approval_line(line)["proposal"] == "4"
    assert approval.check_approval_line(subject.message("cancel"))["action"] == "cancel"
    with pytest.raises(InputError, match=complaint):
        approval.check_approval_line(cut(line))

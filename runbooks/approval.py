"""The approval message members sign, and the checks on what they send back.

A member signs a canonical, human-readable line of restricted ASCII that names exactly
what is approved (domain tag, version, action, governance, proposal, program, buffer,
sha256), wrapped in the Solana off-chain message envelope, version 0:

    b"\\xffsolana offchain" | u8 version = 0 | u8 format = 0 (restricted ASCII)
    | u16 LE length | message

so the stock `solana sign-offchain-message` (and a Ledger through it) produce the same
signature as `runbooks sign`. The envelope version is pinned: a newer envelope (with an
application domain and signer list) would change the signed bytes, and a signature over
it is refused here rather than half-understood.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from runbooks.errors import InputError, InvalidSignature

SIGNING_DOMAIN = b"\xffsolana offchain"
ENVELOPE_VERSION = 0
FORMAT_RESTRICTED_ASCII = 0
# Ledger's limit for an off-chain message; our lines are far shorter.
MAX_MESSAGE_LEN = 1179
DOMAIN_TAG = "solana-runbooks"
MESSAGE_VERSION = "v1"

Action = Literal["approve", "reject", "cancel"]
ACTIONS: tuple[Action, ...] = ("approve", "reject", "cancel")


@dataclass(frozen=True)
class ApprovalSubject:
    """What a sign-off is about; every field appears in the signed text."""

    governance: str  # the upgrade authority / governance account, base58
    proposal: str  # the proposal's id within that governance
    program: str
    buffer: str
    sha256: str  # verifiable-build hash of the buffer, lowercase hex

    def message(self, action: Action = "approve") -> str:
        """The restricted-ASCII line a member signs for ``action``."""
        if action not in ACTIONS:
            raise InputError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
        text = (
            f"{DOMAIN_TAG} {MESSAGE_VERSION}; action: {action}; governance: {self.governance}; "
            f"proposal: {self.proposal}; program: {self.program}; buffer: {self.buffer}; "
            f"sha256: {self.sha256}"
        )
        check_restricted_ascii(text)
        return text


def check_restricted_ascii(text: str) -> None:
    """Refuse anything the off-chain restricted-ASCII format cannot carry."""
    if not text or len(text) > MAX_MESSAGE_LEN:
        raise InputError(f"approval message must be 1..{MAX_MESSAGE_LEN} characters")
    bad = [c for c in text if not 0x20 <= ord(c) <= 0x7E]
    if bad:
        raise InputError(
            f"approval message holds characters outside printable ASCII: {bad[:5]!r}; "
            "descriptions and ids in it must be plain ASCII"
        )


def envelope(message: str) -> bytes:
    """The exact bytes an ed25519 key signs for ``message`` (off-chain envelope v0)."""
    check_restricted_ascii(message)
    body = message.encode("ascii")
    return (
        SIGNING_DOMAIN
        + bytes([ENVELOPE_VERSION, FORMAT_RESTRICTED_ASCII])
        + struct.pack("<H", len(body))
        + body
    )


def sign(keypair: Keypair, message: str) -> Signature:
    """Sign ``message`` as `solana sign-offchain-message` would."""
    return keypair.sign_message(envelope(message))


def verify(member: Pubkey, signature: Signature, message: str) -> None:
    """Raise InvalidSignature unless ``signature`` is ``member``'s over ``message``."""
    if not signature.verify(member, envelope(message)):
        raise InvalidSignature(
            f"signature is not {member}'s over this proposal's {message.split(';')[1].strip()} "
            "message; sign the exact message shown in the form (it names the proposal) "
            "and paste the signature again"
        )

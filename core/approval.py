"""The approval message members sign, and the checks on what they send back.

A member signs a canonical, human-readable line of restricted ASCII that names exactly
what is approved (domain tag, version, action, cluster, governance, proposal, program,
buffer, sha256), wrapped in a Solana off-chain message envelope. Two envelopes are in use
by the tools members have, and both are accepted:

- **standard** (off-chain message v0 of solana-offchain-message 3.x: the Agave 3.x CLI's
  ``solana sign-offchain-message``, Ledger and Trezor through it, ``@solana/kit``)::

    b"\\xffsolana offchain" | u8 version = 0 | application domain (32 bytes)
    | u8 format = 0 (restricted ASCII) | u8 signer count = 1 | signer (32 bytes)
    | u16 LE length | message

  The CLI signs with an all-zero application domain and itself as the one signer.
- **legacy** (Agave 1.18/2.x CLIs)::

    b"\\xffsolana offchain" | u8 version = 0 | u8 format = 0 | u16 LE length | message

Anything else (two signers, another signer, another format or version, a length that
disagrees) is not a sign-off: its signature verifies under neither envelope.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Literal, get_args

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from core.errors import InputError, InvalidSignature

SIGNING_DOMAIN = b"\xffsolana offchain"
ENVELOPE_VERSION = 0
FORMAT_RESTRICTED_ASCII = 0
ZERO_DOMAIN = bytes(32)  # the application domain the stock CLI signs with
LEGACY_HEADER_LEN = 20
# Ledger's limit for an off-chain message; our lines are far shorter.
MAX_MESSAGE_LEN = 1179
DOMAIN_TAG = "solana-runbooks"
MESSAGE_VERSION = "v2"

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
    # The cluster's genesis hash (base58): the same upgrade on devnet and mainnet (same
    # keys, program id and bytes) is two different lines.
    cluster: str

    def message(self, action: Action = "approve") -> str:
        """The restricted-ASCII line a member signs for ``action``."""
        text = (
            f"{line_head(action, self.cluster)}governance: {self.governance}; "
            f"proposal: {self.proposal}; program: {self.program}; buffer: {self.buffer}; "
            f"sha256: {self.sha256}"
        )
        check_restricted_ascii(text)
        return text


def line_head(action: Action, cluster: str) -> str:
    """``solana-runbooks v2; action: <action>; cluster: <genesis hash>; ``: how every
    approval line starts (upgrade_manager's message.c writes the same)."""
    if action not in ACTIONS:
        raise InputError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    if not cluster:
        raise InputError(
            "the approval line needs the cluster's genesis hash; this proposal has none "
            "recorded (made before the records kept it): start a new run to propose again"
        )
    return f"{DOMAIN_TAG} {MESSAGE_VERSION}; action: {action}; cluster: {cluster}; "


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


Envelope = Literal["standard", "legacy"]
ENVELOPES: tuple[Envelope, ...] = get_args(Envelope)


@dataclass(frozen=True)
class SignedForm:
    """Which bytes a signature covers: the envelope, and for the standard one its
    application domain (the signer is always the member)."""

    envelope: Envelope = "standard"
    application_domain: bytes = ZERO_DOMAIN

    def __post_init__(self) -> None:
        if self.envelope not in ENVELOPES:
            raise InputError(f"envelope: {self.envelope!r} is not one of {', '.join(ENVELOPES)}")
        if len(self.application_domain) != 32:
            raise InputError("application domain must be 32 bytes")


STANDARD = SignedForm("standard")
LEGACY = SignedForm("legacy")


def legacy_envelope(message: str) -> bytes:
    """The bytes Agave 1.18/2.x `solana sign-offchain-message` signs for ``message``."""
    check_restricted_ascii(message)
    body = message.encode("ascii")
    return (
        SIGNING_DOMAIN
        + bytes([ENVELOPE_VERSION, FORMAT_RESTRICTED_ASCII])
        + struct.pack("<H", len(body))
        + body
    )


def standard_envelope(
    message: str, signer: Pubkey, application_domain: bytes = ZERO_DOMAIN
) -> bytes:
    """The bytes the standard off-chain message v0 signs for ``message`` by ``signer``."""
    check_restricted_ascii(message)
    if len(application_domain) != 32:
        raise InputError("application domain must be 32 bytes")
    body = message.encode("ascii")
    return (
        SIGNING_DOMAIN
        + bytes([ENVELOPE_VERSION])
        + application_domain
        + bytes([FORMAT_RESTRICTED_ASCII, 1])
        + bytes(signer)
        + struct.pack("<H", len(body))
        + body
    )


def envelope(message: str, signer: Pubkey | None = None, form: SignedForm = LEGACY) -> bytes:
    """The exact bytes ``signer`` signs for ``message`` in ``form``."""
    if form.envelope == "legacy":
        return legacy_envelope(message)
    if signer is None:
        raise InputError("the standard envelope names its signer: pass the member's key")
    return standard_envelope(message, signer, form.application_domain)


def sign(keypair: Keypair, message: str, form: SignedForm = STANDARD) -> Signature:
    """Sign ``message`` as `solana sign-offchain-message` would (``form``: which CLI; the
    standard envelope of current CLIs by default)."""
    return keypair.sign_message(envelope(message, keypair.pubkey(), form))


def verify(
    member: Pubkey,
    signature: Signature,
    message: str,
    *,
    domains: tuple[bytes, ...] = (ZERO_DOMAIN,),
) -> SignedForm:
    """The form in which ``signature`` is ``member``'s over ``message``: the standard
    envelope (one signer, ``member``; an application domain from ``domains``) or the
    legacy one. InvalidSignature when it is neither."""
    forms = [SignedForm("standard", d) for d in domains] + [LEGACY]
    for form in forms:
        if signature.verify(member, envelope(message, member, form)):
            return form
    raise InvalidSignature(
        f"signature is not {member}'s over this proposal's {message.split(';')[1].strip()} "
        "message, in the standard off-chain envelope (signer: that key, application "
        "domain: zero) nor the legacy one; sign the exact message shown in the form (it "
        "names the proposal) and paste the signature again"
    )


# Fields each kind of line must carry after action, governance and proposal; a line cut
# short (a truncated paste) misses its last ones.
_LINE_FIELDS: dict[str, tuple[str, ...]] = {
    "upgrade": ("program", "buffer", "sha256"),
    "authority-change": ("program", "change", "new-authority", "sha256"),
    "emergency-upgrade": ("program", "buffer", "sha256"),
    "set-authority": ("program", "new_authority"),
    "config": ("threshold", "timelock", "emergency_threshold", "emergency_timelock", "members"),
}
_KEY_FIELDS = ("cluster", "program", "buffer", "new_authority", "new-authority")
# Values that stand for no key in a key field: "none" (immutable), a kill-switch release.
_WORD = re.compile(r"[a-z*][a-z*-]*")


def check_approval_line(text: str) -> dict[str, str]:
    """The fields of a well-formed approval line; ``InputError`` naming what is wrong
    (not an approval line, cut off, an edited field) otherwise."""
    text = text.strip()
    prefix = f"{DOMAIN_TAG} {MESSAGE_VERSION}; "
    if not text.startswith(prefix):
        raise InputError(
            f"not an approval line: it must start with {prefix.strip()!r} (got "
            f"{text[:30]!r}); copy the whole line from the form's 'exact message to sign'"
        )
    check_restricted_ascii(text)
    fields: dict[str, str] = {}
    for n, part in enumerate(text[len(prefix) :].split("; "), start=2):
        name, sep, value = part.partition(": ")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise InputError(
                f"part {n} of the line ({part[:40]!r}) is not 'name: value': the line was "
                "cut or edited; copy it again, whole, from the form"
            )
        fields[name] = value
    if fields.get("action") not in ACTIONS:
        raise InputError(
            f"action: {fields.get('action')!r} is not one of {', '.join(ACTIONS)}; the line "
            f"must start '{prefix}action: approve; cluster: ...'"
        )
    kind = fields.get("kind") or ("authority-change" if "change" in fields else "upgrade")
    missing = [
        f
        for f in ("cluster", "governance", "proposal", *_LINE_FIELDS.get(kind, ()))
        if f not in fields
    ]
    if missing:
        raise InputError(
            f"the line has no {', '.join(f + ':' for f in missing)} field: it looks cut off "
            f"after {text[-24:]!r}; copy the whole line from the form"
        )
    if not fields["proposal"].isdigit():
        raise InputError(f"proposal: {fields['proposal']!r} is not a number")
    sha = fields.get("sha256")
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise InputError(
            f"sha256: {sha[:70]!r} is {len(sha)} characters, not 64 lowercase hex digits: "
            "the line looks cut off or edited; copy it again from the form"
        )
    for name in _KEY_FIELDS:
        value = fields.get(name)
        if value is None or _WORD.fullmatch(value):
            continue
        try:
            Pubkey.from_string(value)
        except ValueError:
            raise InputError(
                f"{name}: {value!r} is not a base58 public key: the line looks cut off or "
                "edited; copy it again from the form"
            ) from None
    return fields

"""The multisig policy and its audit (the security checks every proposal passes first).

Checks, all reported together so an operator fixes the policy in one go:
at least 3 members; no duplicate members; every member a valid public key (an ed25519
point of large order: the identity and other small-order points have no holder, or
every holder); a threshold of at least half the members and at most their number; an
emergency threshold, when set, no lower than the threshold (an emergency path must not
need fewer people); a timelock of at least the policy minimum (48 h by default; a
localnet policy may lower the minimum); a non-empty description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from solders.pubkey import Pubkey

from core.ed25519 import is_large_order_point
from core.errors import InputError, PolicyViolation

MIN_MEMBERS = 3
DEFAULT_MIN_TIMELOCK_SECONDS = 48 * 3600


class Member(BaseModel):
    """A member as people know them: a name, the key they sign with, their Slack user.

    A plain base58 string validates as a nameless member, so a policy saved when members
    were bare public keys still loads.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(
        default="", title="Name", description="How the team knows this member, e.g. Alice."
    )
    pubkey: str = Field(title="Public key", description="Base58 address of the member's key.")
    slack_user_id: str | None = Field(
        default=None,
        title="Slack user id",
        description="e.g. U0123ABCD (Slack profile > Copy member ID): mentioned while their "
        "sign-off is missing, and allowed to press the runbooks' Slack buttons.",
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_pubkey(cls, value: Any) -> Any:
        return {"pubkey": value} if isinstance(value, str) else value

    def label(self) -> str:
        """``Alice (4Nd1…x9Zq)``, or the short key alone when the member has no name."""
        return f"{self.name} ({short_key(self.pubkey)})" if self.name else short_key(self.pubkey)


def short_key(pubkey: str) -> str:
    """The first and last four characters of a base58 key, as wallets show it."""
    return pubkey if len(pubkey) <= 12 else f"{pubkey[:4]}…{pubkey[-4:]}"


@dataclass(frozen=True)
class Policy:
    """Who signs off, how many must, and how long changes wait before they run."""

    name: str
    members: tuple[str, ...]
    threshold: int
    timelock_seconds: int
    min_timelock_seconds: int = DEFAULT_MIN_TIMELOCK_SECONDS
    emergency_threshold: int | None = None
    emergency_timelock_seconds: int | None = None
    backend: str = "keypair"
    tags: dict[str, str] = field(default_factory=dict)
    # Names and Slack ids of (some of) ``members``; a key without a profile is nameless.
    profiles: tuple[Member, ...] = ()

    def member_keys(self) -> list[Pubkey]:
        return [Pubkey.from_string(m) for m in self.members]

    def member(self, pubkey: str) -> Member:
        """The profile of ``pubkey`` (a nameless one when the policy names nobody)."""
        for profile in self.profiles:
            if profile.pubkey == pubkey:
                return profile
        return Member(pubkey=pubkey)

    def label(self, pubkey: str) -> str:
        return self.member(pubkey).label()

    def slack_user_ids(self) -> frozenset[str]:
        """The Slack users allowed to press this policy's buttons."""
        return frozenset(p.slack_user_id for p in self.profiles if p.slack_user_id)


def audit_findings(policy: Policy, description: str) -> list[str]:
    """Every failed check, as sentences naming what is wrong; empty when all pass."""
    findings: list[str] = []
    members = [m.strip() for m in policy.members]
    if len(members) < MIN_MEMBERS:
        findings.append(f"the multisig has {len(members)} members; at least {MIN_MEMBERS} needed")
    duplicates = sorted({m for m in members if members.count(m) > 1})
    if duplicates:
        findings.append(f"duplicate members: {', '.join(duplicates)}")
    for member in members:
        try:
            key = Pubkey.from_string(member)
        except Exception:
            findings.append(f"member {member[:60]!r} is not a base58 public key")
            continue
        if not is_large_order_point(bytes(key)):
            findings.append(
                f"member {member} is not an ed25519 public key anyone holds alone (not a "
                "curve point of large order, e.g. the identity point): nobody, or everybody, "
                "can sign for it"
            )
    if policy.threshold > len(members):
        findings.append(
            f"threshold {policy.threshold} is above the member count {len(members)}: "
            "no proposal could ever pass"
        )
    if policy.threshold < 1 or 2 * policy.threshold < len(members):
        findings.append(
            f"threshold {policy.threshold} of {len(members)} is below half of the members"
        )
    emergency = policy.emergency_threshold
    if emergency is not None and emergency < policy.threshold:
        findings.append(
            f"emergency threshold {emergency} is below the threshold {policy.threshold}: "
            "the emergency path (shorter timelock) would let fewer members do what the "
            "normal path needs more for; set it to at least the threshold"
        )
    if policy.timelock_seconds < policy.min_timelock_seconds:
        findings.append(
            f"timelock {policy.timelock_seconds} s is below the policy minimum "
            f"{policy.min_timelock_seconds} s"
        )
    return findings


# Long enough for a paragraph; a Slack section block holds 3,000 characters.
MAX_DESCRIPTION_LEN = 1000


def check_description(text: str, field: str = "description") -> str:
    """The proposal's text, stripped: 1..1000 printable ASCII characters (every member
    reads it in Slack, the form and the records); ``InputError`` naming ``field`` else."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{field} is empty: say what changes and why, in plain ASCII")
    text = text.strip()
    if len(text) > MAX_DESCRIPTION_LEN:
        raise InputError(
            f"{field} is {len(text)} characters long; shorten it to {MAX_DESCRIPTION_LEN} "
            "or fewer (link a document for details)"
        )
    bad = sorted({c for c in text if not 0x20 <= ord(c) <= 0x7E})
    if bad:
        raise InputError(
            f"{field} holds characters other than printable ASCII ({bad[:5]!r}): control "
            "characters and non-ASCII letters are refused; write it in plain ASCII"
        )
    return text


def audit(policy: Policy, description: str, field: str = "description") -> None:
    """Refuse a bad ``description`` (``InputError`` naming ``field``), then raise
    PolicyViolation listing every failed check of the policy."""
    check_description(description, field)
    findings = audit_findings(policy, description)
    if findings:
        raise PolicyViolation(findings)


# The backends whose runbook path is built; anything else refuses (never falls back).
BUILT_BACKENDS = ("keypair", "onchain")


# The runbooks with a Squads path; the others refuse a Squads policy.
SQUADS_RUNBOOKS = ("upgrade", "key rotation", "emergency rollback", "kill switch")


def check_backend(policy: Policy, runbook: str) -> None:
    """Refuse, before anything is recorded or sent, a policy whose backend has no path in
    ``runbook``: a Squads policy must never run as the hot-key ``keypair`` backend."""
    if policy.backend in BUILT_BACKENDS:
        return
    if policy.backend == "squads" and runbook in SQUADS_RUNBOOKS:
        return
    if policy.backend == "squads":
        raise InputError(
            f"the Squads backend runs the {runbook} not yet (only the "
            f"{', '.join(SQUADS_RUNBOOKS)}): nothing was recorded or sent. Set backend to "
            f"keypair or onchain in the Multisig Policy block {policy.name!r}"
        )
    raise InputError(
        f"backend {policy.backend!r} of the Multisig Policy block {policy.name!r} is not "
        f"one of {', '.join(BUILT_BACKENDS)}; nothing was recorded or sent"
    )

"""Reviewing one sign-off against the policy, and what the pause form shows a member.

Plain Python: the flow pauses, a member submits pubkey + signature (+ decision), and
``review`` says whether it counts and, if not, why — in words the records keep.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core import approval
from core.approval import ZERO_DOMAIN, Action, ApprovalSubject, SignedForm
from core.errors import (
    ApprovalError,
    DuplicateApproval,
    NotAMember,
    ProposalClosed,
    RunbookError,
    TimelockActive,
)
from core.keys import parse_pubkey, parse_signature
from domain.policy import Policy, short_key


class Signable(Protocol):
    """Anything whose sign-off is a signature over ``message(action)``."""

    def message(self, action: Action = "approve") -> str: ...


class Attempt(Protocol):
    """A sign-off attempt as the records keep it (a ``Verdict`` is one too)."""

    @property
    def member(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def accepted(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def envelope(self) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    member: str
    decision: Action
    accepted: bool
    reason: str | None = None
    form: SignedForm | None = None  # the envelope the accepted signature was made in

    @property
    def envelope(self) -> str | None:
        """``standard`` or ``legacy`` for an accepted signature, as the records keep it."""
        return self.form.envelope if self.form is not None else None


def review(
    subject: Signable,
    policy: Policy,
    member: str,
    signature: str,
    decision: Action,
    already_signed: Collection[str],
    domains: tuple[bytes, ...] = (ZERO_DOMAIN,),
) -> Verdict:
    """Accept a sign-off only from a member, once, with a valid signature over this
    proposal (either envelope; ``domains``: the application domains allowed)."""
    member = (member or "").strip()
    try:
        key = parse_pubkey(member, "member pubkey")
        if str(key) not in policy.members:
            raise NotAMember(
                f"{key} is not a member of multisig {policy.name!r}; only its "
                f"{len(policy.members)} members can sign off"
            )
        if str(key) in already_signed:
            raise DuplicateApproval(f"{key} has already signed off on this proposal")
        sig = parse_signature(signature)
        form = approval.verify(key, sig, subject.message(decision), domains=domains)
    except RunbookError as exc:
        return Verdict(member=member, decision=decision, accepted=False, reason=str(exc))
    return Verdict(member=str(key), decision=decision, accepted=True, form=form)


def form_description(
    *,
    proposal_id: int,
    subject: ApprovalSubject,
    description: str,
    proposer: str,
    cluster: str,
    threshold: int,
    members: list[str],
    approved_by: Collection[str],
    rpc_url: str,
    explorer_link: str | None = None,
    kind: str = "upgrade",
    label: Callable[[str], str] = short_key,
    last: Attempt | None = None,
    onchain_address: str | None = None,
) -> str:
    """The markdown a member reads in the pause form before signing.

    Prefect titles the dialog "Resume Flow Run", so the text opens with its own heading.
    The proposal number shown is the one in the signed line (``subject.proposal``: the
    on-chain index for the onchain backend); the records id is named as such. Addresses
    and the hash each get a line of their own, so the dialog wraps nothing mid-value.
    """
    message = subject.message("approve")
    number = subject.proposal
    records_note = "" if number == str(proposal_id) else f" (records #{proposal_id})"
    if onchain_address:
        sign_command = (
            f"runbooks sign --onchain-proposal {onchain_address} --url {rpc_url} "
            "--keypair ~/.config/solana/id.json"
        )
    else:
        sign_command = f'runbooks sign --keypair ~/.config/solana/id.json --message "{message}"'
    lines = [
        f"# Sign off {kind} proposal {number}",
        "",
        f"**Proposal {number}**{records_note} on **{cluster}**, proposed by {proposer}: "
        f"{description}",
        "",
        *([last_attempt_line(last, label), ""] if last is not None else []),
        *subject_lines(subject, explorer_link, onchain_address),
        f"**Approvals: {len(approved_by)} of {threshold} needed**",
        "",
        *signing_section(
            members=members,
            approved_by=approved_by,
            message=message,
            sign_command=sign_command,
            label=label,
        ),
        "Then paste your public key and the signature below. To reject or cancel the",
        "proposal, pick that decision and sign the same message with `action: reject` or",
        "`action: cancel` in place of `action: approve` (`runbooks sign --action reject`).",
        "",
        f"RPC: {rpc_url}",
    ]
    return "\n".join(lines)


def last_attempt_line(last: Attempt, label: Callable[[str], str] = short_key) -> str:
    """The previous attempt's verdict, so whoever submitted it sees it in the next form."""
    who = label(last.member) if last.member else "an empty key"
    if last.accepted:
        signed_in = f" ({last.envelope} envelope)" if last.envelope else ""
        return f"**Last sign-off: accepted** — {last.decision} from {who}{signed_in}."
    return f"**Last sign-off: refused** — {last.decision} from {who}: {last.reason}"


def signing_section(
    *,
    members: Collection[str],
    approved_by: Collection[str],
    message: str,
    sign_command: str,
    label: Callable[[str], str] = short_key,
) -> list[str]:
    """Markdown lines: who has signed, who has not (by name and short key), the exact
    message and how to sign it."""
    missing = [m for m in members if m not in approved_by]
    return [
        "**Signed so far:** " + (", ".join(label(m) for m in approved_by) or "nobody"),
        "",
        "**Still to sign:** " + (", ".join(label(m) for m in missing) or "nobody"),
        "",
        *sign_lines("The exact message to sign", message, sign_command),
    ]


def subject_lines(
    subject: ApprovalSubject, explorer_link: str | None = None, onchain_address: str | None = None
) -> list[str]:
    """Program, buffer and hash (and the on-chain proposal account), each on a line of
    its own so the dialog wraps nothing mid-value."""
    link = f" ([explorer]({explorer_link}))" if explorer_link else ""
    lines = [f"**Program**{link}", "", f"`{subject.program}`", ""]
    if subject.buffer:  # an authority change has none; its line names the new authority
        lines += ["**Buffer**", "", f"`{subject.buffer}`", ""]
    # 64 hex digits in one span overflow the dialog; groups of 8 wrap and still compare
    # easily against `solana-verify` output.
    groups = " ".join(subject.sha256[i : i + 8] for i in range(0, len(subject.sha256), 8))
    lines += [
        "**sha256** (verifiable build)",
        "",
        f"`{groups}`",
        "",
    ]
    if onchain_address:
        lines += ["**On-chain proposal account**", "", f"`{onchain_address}`", ""]
    return lines


def sign_lines(heading: str, message: str, sign_command: str) -> list[str]:
    """The exact message under ``heading``, the two ways to sign it, and which tools
    sign which envelope."""
    return [
        f"### {heading}",
        "",
        "```",
        message,
        "```",
        "",
        "Sign it with your own key (nothing secret ever enters this form):",
        "",
        "```",
        sign_command,
        "```",
        "",
        "or with the stock Solana CLI (also with a Ledger: `-k usb://ledger`):",
        "",
        "```",
        f'solana sign-offchain-message -k ~/.config/solana/id.json "{message}"',
        "```",
        "",
        *ENVELOPES_NOTE,
        "",
    ]


# Which tools sign which off-chain envelope; both count.
ENVELOPES_NOTE = (
    "Both off-chain envelopes are accepted: Agave 3.x CLIs (and a Ledger through them), "
    "`@solana/kit` and `runbooks sign` sign the standard one; Agave 1.18/2.x CLIs sign "
    "the legacy one (`runbooks sign --legacy` makes it too).",
)


def check_executable(
    *,
    proposal_id: int,
    status: str,
    approvals: int,
    threshold: int,
    timelock_ends_at: datetime | None,
    now: datetime,
) -> None:
    """Refuse execution unless the proposal is approved and its timelock has run out."""
    if status in ("cancelled", "rejected", "failed"):
        raise ProposalClosed(f"proposal #{proposal_id} is {status}; it can no longer execute")
    if approvals < threshold or timelock_ends_at is None:
        raise ApprovalError(
            f"proposal #{proposal_id} has {approvals} of {threshold} approvals; "
            "collect the missing sign-offs first"
        )
    if now < timelock_ends_at:
        raise TimelockActive((timelock_ends_at - now).total_seconds())

"""What the timelock's pause form shows: when the upgrade executes, and how one member
cancels it with a signed ``cancel``.

Plain Python: the flow pauses for the rest of the timelock with this text, and the
signature a member submits is reviewed like any sign-off (domain/signoff.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from core.approval import ApprovalSubject
from domain.policy import short_key
from domain.signoff import sign_lines, subject_lines


def countdown(seconds: float) -> str:
    """``4 min 12 s``, ``2 h 5 min``, ``3 d 4 h``: how long until the upgrade executes."""
    left = max(0, int(seconds + 0.5))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def form_description(
    *,
    proposal_id: int,
    subject: ApprovalSubject,
    description: str,
    proposer: str,
    cluster: str,
    approved_by: Collection[str],
    executes_at: datetime,
    now: datetime,
    refused: str | None = None,
    label: Callable[[str], str] = short_key,
    kind: str = "upgrade",
) -> str:
    """The markdown of the timelock pause: the execution time, a countdown as of ``now``,
    the proposal, and the exact ``cancel`` message to sign.

    The proposal number is the one in the signed line (the on-chain index for the
    onchain backend), as in the sign-off form.
    """
    number = subject.proposal
    records_note = "" if number == str(proposal_id) else f" (records #{proposal_id})"
    message = subject.message("cancel")
    lines = [
        f"# {kind.capitalize()} proposal {number} executes at {utc(executes_at)}",
        "",
        f"**In {countdown((executes_at - now).total_seconds())}** (as of {utc(now)}, when "
        f"this form opened). The run waits here until then, and executes the {kind} unless "
        "a member cancels it in this form. Any one member may cancel, also one who approved.",
        "",
        f"**Proposal {number}**{records_note} on **{cluster}**, proposed by {proposer}: "
        f"{description}",
        "",
        *([f"**The last cancel was refused:** {refused}", ""] if refused else []),
        *subject_lines(subject),
        "**Approved by:** " + (", ".join(label(m) for m in approved_by) or "nobody"),
        "",
        *sign_lines(
            f"To cancel the {kind}, sign this exact message",
            message,
            # The line itself: signing it needs no records database.
            f'runbooks sign --keypair ~/.config/solana/id.json --message "{message}"',
        ),
        "Then paste your public key and the signature below and submit. Prefect's own "
        "Cancel button only stops this run: the approved proposal stays open; a signed "
        "cancel here closes it.",
    ]
    return "\n".join(lines)

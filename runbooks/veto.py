"""What the timelock's pause form shows: when the upgrade executes, and how one member
cancels it with a signed ``cancel``.

Plain Python: the flow pauses for the rest of the timelock with this text, and the
signature a member submits is reviewed like any sign-off (runbooks/signoff.py).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from runbooks.approval import ApprovalSubject


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
) -> str:
    """The markdown of the timelock pause: the execution time, a countdown as of ``now``,
    the proposal, and the exact ``cancel`` message to sign."""
    lines = [
        f"## Upgrade proposal #{proposal_id} executes at {utc(executes_at)}",
        "",
        f"**In {countdown((executes_at - now).total_seconds())}** (as of {utc(now)}, when "
        "this form opened). The run waits here until then, and executes the upgrade unless "
        "a member cancels it in this form. Any one member may cancel, also one who approved.",
        "",
        f"| Proposal | #{proposal_id} |",
        "|---|---|",
        f"| Cluster | {cluster} |",
        f"| Program | `{subject.program}` |",
        f"| Buffer | `{subject.buffer}` |",
        f"| sha256 (verifiable build) | `{subject.sha256}` |",
        f"| Description | {description} |",
        f"| Proposer | {proposer} |",
        f"| Approved by | {', '.join(f'`{m}`' for m in approved_by) or 'nobody'} |",
        "",
    ]
    if refused:
        lines += [f"**The last cancel was refused:** {refused}", ""]
    message = subject.message("cancel")
    lines += [
        "### To cancel the upgrade, sign this exact message",
        "",
        "```",
        message,
        "```",
        "",
        "with your own member key (nothing secret ever enters this form):",
        "",
        "```",
        f"runbooks sign --proposal {proposal_id} --action cancel "
        "--keypair ~/.config/solana/id.json",
        "```",
        "",
        "or with the stock Solana CLI (also with a Ledger: `-k usb://ledger`):",
        "",
        "```",
        f'solana sign-offchain-message -k ~/.config/solana/id.json "{message}"',
        "```",
        "",
        "Then paste your public key and the signature below and submit. Prefect's own "
        "Cancel button only stops this run: the approved proposal stays open; a signed "
        "cancel here closes it.",
    ]
    return "\n".join(lines)

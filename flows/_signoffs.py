"""Collecting M-of-N sign-offs through Prefect pause forms: the one loop every runbook
that needs a sign-off (upgrade, rollback, kill-switch release, key rotation) uses.

One pause per sign-off attempt; each entry is reviewed (member, once, a valid signature
over this proposal's message), recorded accepted or refused with its reason, announced,
and the form asks again until the threshold is met or members reject or cancel. The
pause keys carry the proposal id and an attempt counter taken from the records, so a
restarted run, or a run that collects sign-offs for two proposals, never reuses one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from runbooks import messages, signoff
from runbooks.errors import ApprovalError
from runbooks.policy import Policy
from runbooks.signoff import Signable, Verdict
from store.records import ProposalRecord
from tasks import records
from tasks.notify import notify, update_thread

# The chain's view of who decided what, and whether the proposal closed there.
ChainSignoffs = Callable[[], Awaitable[tuple[dict[str, str], str | None]]]
# Hands an accepted sign-off to an on-chain program; returns the program's verdict.
Relay = Callable[[Verdict, str], Awaitable[Verdict]]


def pause_poll_seconds() -> int:
    """How often a paused run checks for a resume (Prefect's default is 10 s)."""
    return int(os.environ.get("RUNBOOKS_PAUSE_POLL_SECONDS", "10"))


class SignOff(RunInput):
    """One member's sign-off, entered in the paused run's Resume form."""

    member: str = Field(
        title="Your public key",
        description="The base58 address of your member key (`solana address -k <keypair>`).",
    )
    signature: str = Field(
        title="Signature",
        description="The base58 signature printed by `runbooks sign` or "
        "`solana sign-offchain-message` over the exact message shown above.",
    )
    decision: Literal["approve", "reject", "cancel"] = Field(
        default="approve",
        title="Decision",
        description="approve, reject, or cancel the proposal; sign the message with that action.",
    )
    # A plain string: an optional `str | None` renders as a confusing str/None switch.
    comment: str = Field(
        default="", title="Comment", description="Optional note, kept in the records."
    )


@dataclass(frozen=True)
class SignOffOutcome:
    approved_by: list[str]
    closed: Literal["rejected", "cancelled"] | None = None
    reason: str | None = None
    seconds_paused: float = 0.0


async def collect_signoffs(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    *,
    threshold: int,
    timeout_seconds: int,
    describe: Callable[[list[str]], str],
    slack_block: str | None,
    runbook: str,
    chain_signoffs: ChainSignoffs | None = None,
    relay: Relay | None = None,
) -> SignOffOutcome:
    """Pause for sign-offs until ``threshold`` members approve, or they reject or cancel.

    ``describe(approved_by)`` writes the form's markdown. With ``chain_signoffs`` and
    ``relay`` (an on-chain backend) each accepted sign-off is relayed, the program's
    verdict is what the records keep, and who signed off is read back from the chain.
    """
    logger = get_run_logger()
    history = records.proposal_approvals(proposal.id)
    decided = {a.member: a.decision for a in history if a.accepted}
    attempt = len(history)  # a fresh pause key per attempt, also across restarts
    paused = 0.0
    while True:
        closed = None
        if chain_signoffs is not None:  # the chain is the source of truth
            decided, closed = await chain_signoffs()
        approved = [m for m, d in decided.items() if d == "approve"]
        if closed in ("cancelled", "rejected"):
            return SignOffOutcome(approved, closed, f"{closed} on chain", paused)
        if len(approved) >= threshold:
            return SignOffOutcome(approved_by=approved, seconds_paused=paused)
        attempt += 1
        pause_started = time.monotonic()
        try:
            entry = await pause_flow_run(
                wait_for_input=SignOff.with_initial_data(description=describe(approved)),
                timeout=timeout_seconds,
                poll_interval=pause_poll_seconds(),
                key=f"signoff-{proposal.id}-{attempt}",
            )
        except FlowPauseTimeout:
            records.set_proposal_status(proposal.id, "failed", reason="sign-off window closed")
            raise ApprovalError(
                f"proposal #{proposal.id}: no sign-off within {timeout_seconds} s; "
                f"start a new {runbook} run to propose again"
            ) from None
        paused += time.monotonic() - pause_started
        verdict = signoff.review(
            subject, policy, entry.member, entry.signature, entry.decision, decided.keys()
        )
        if verdict.accepted and relay is not None:
            verdict = await relay(verdict, entry.signature)
        records.record_approval(
            proposal.id,
            member=verdict.member,
            decision=verdict.decision,
            accepted=verdict.accepted,
            signature=entry.signature.strip() or None,
            comment=entry.comment.strip() or None,
            reason=verdict.reason,
        )
        if verdict.accepted:
            decided[verdict.member] = verdict.decision
        await announce_progress(proposal, policy, subject, verdict, decided, threshold, slack_block)
        if not verdict.accepted:
            logger.warning("sign-off refused: %s", verdict.reason)
            continue
        logger.info("%s accepted from %s", verdict.decision, verdict.member)
        if verdict.decision == "cancel":
            return SignOffOutcome(approved, "cancelled", f"cancelled by {verdict.member}", paused)
        rejections = sum(1 for d in decided.values() if d == "reject")
        if len(policy.members) - rejections < threshold:
            return SignOffOutcome(
                approved,
                "rejected",
                f"{rejections} members rejected; the threshold is out of reach",
                paused,
            )


async def announce_progress(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    verdict: Verdict,
    decided: dict[str, str],
    threshold: int,
    slack_block: str | None,
) -> None:
    """Reply in the proposal's Slack thread, mentioning who has not signed, and update its
    first message's status (have/need, who signed)."""
    approved = [m for m, d in decided.items() if d == "approve"]
    missing = [
        (policy.label(m), policy.member(m).slack_user_id)
        for m in policy.members
        if m not in decided
    ]
    await notify(
        *messages.approval_progress(
            # The number members sign (the on-chain index for the onchain backend).
            proposal_id=getattr(subject, "proposal", proposal.id),
            member=policy.label(verdict.member) if verdict.member else "an empty key",
            accepted=verdict.accepted,
            reason=verdict.reason,
            have=len(approved),
            need=threshold,
            decision=verdict.decision,
            waiting_for=missing,
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    closed = None
    if verdict.accepted and verdict.decision == "cancel":
        closed = f"cancelled by {policy.label(verdict.member)}"
    elif len(approved) >= threshold:
        closed = "threshold met"
    status = messages.signoff_status(
        have=len(approved),
        need=threshold,
        signed=[policy.label(m) for m in approved],
        missing=missing,
        closed=closed,
    )
    await update_thread(proposal.id, status, slack_block)

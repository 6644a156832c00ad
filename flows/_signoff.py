"""Sign-offs: what members sign for each kind of proposal, and collecting M-of-N of
them through Prefect pause forms, the one loop every runbook that needs a sign-off
(upgrade, rollback, kill-switch release, key rotation) uses, and the veto during a
timelock.

One pause per sign-off attempt; each entry is reviewed (member, once, a valid signature
over this proposal's message), recorded accepted or refused with its reason, announced,
and the form asks again until the threshold is met or members reject or cancel. The
pause keys carry the proposal id, an attempt counter and a token of the run's attempt, so
a restarted run (the same flow run after a kill), or a run that collects sign-offs for two
proposals, never reuses one. Before pausing, a run reviews once each entry left at an
earlier pause of the proposal and never recorded, and records the votes the chain holds
that the records lack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from prefect import get_client, get_run_logger
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.input.run_input import keyset_from_base_key
from prefect.runtime import flow_run
from prefect.states import Running
from pydantic import Field

from core.approval import ZERO_DOMAIN, Action, ApprovalSubject
from core.errors import ApprovalError, InputError
from core.keys import parse_pubkey
from core.settings import settings
from domain import messages, signoff
from domain.kill_switch import KillSwitchRelease
from domain.policy import Policy
from domain.signoff import Signable, Verdict
from flows._pause import pause_for_input
from store.records.kill_switch import RELEASE_KIND
from store.records.proposals import ProposalRecord
from tasks import governance, records
from tasks.notify import notify, update_thread

# The chain's view of who decided what, and whether the proposal closed there.
ChainSignoffs = Callable[[], Awaitable[tuple[dict[str, str], str | None]]]
# Hands an accepted sign-off to an on-chain program; returns the program's verdict.
Relay = Callable[[Verdict, str], Awaitable[Verdict]]


def pause_poll_seconds() -> int:
    """How often a paused run checks for a resume (Prefect's default is 10 s)."""
    return settings().pause_poll_seconds


# --- What members sign -------------------------------------------------------------------


def approval_subject(proposal: ProposalRecord) -> ApprovalSubject:
    """The line members sign for an upgrade or rollback proposal."""
    return ApprovalSubject(
        governance=proposal.governance,
        # onchain backend: the on-chain proposal index, as upgrade_manager rebuilds the text
        proposal=governance.proposal_number(proposal),
        program=proposal.program_id,
        buffer=proposal.buffer or "",
        sha256=proposal.buffer_hash or "",
        # None for proposals recorded before the records kept it: line_head refuses those.
        cluster=proposal.genesis_hash or "",
    )


def signing_subject(proposal: ProposalRecord) -> Signable:
    """The subject whose ``message(action)`` members sign for ``proposal``."""
    if proposal.kind == RELEASE_KIND:
        return KillSwitchRelease.for_proposal(proposal)
    if proposal.backend == "onchain" and proposal.kind != "upgrade" and proposal.onchain_address:
        # upgrade_manager's line for other kinds names the kind: the chain is the source.
        raise InputError(
            f"proposal #{proposal.id} is an on-chain {proposal.kind} proposal: sign the line "
            f"upgrade_manager rebuilds with `runbooks sign --onchain-proposal "
            f"{proposal.onchain_address} --url <rpc> --keypair <file>`"
        )
    if proposal.kind in ("set-authority", "make-immutable"):
        # The new authority is not a field of the record: the form's line is the source.
        raise InputError(
            f"proposal #{proposal.id} is a {proposal.kind} proposal: sign the exact line its "
            'sign-off form shows with `runbooks sign --message "<line>" --keypair <file>`'
        )
    return approval_subject(proposal)


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
    # Kept in the records and shown in Slack: bounded, no control characters (the form
    # refuses them when submitted, the JSON schema carries both rules).
    comment: str = Field(
        default="",
        title="Comment",
        description="Optional note, kept in the records (500 characters at most).",
        max_length=500,
        pattern=r"^[^\x00-\x1f\x7f]*$",
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
    # Entries submitted to an earlier pause but never recorded (the run was killed between
    # the member's submit and the record), then votes the chain holds that the records lack.
    await pick_up_unrecorded(proposal, policy, subject, threshold, slack_block, relay)
    if chain_signoffs is not None:
        await record_chain_votes(proposal, chain_signoffs)
    history = records.proposal_approvals(proposal.id)
    decided = {a.member: a.decision for a in history if a.accepted}
    attempt = len(history)
    # The run's own token in every key: a retried run of the same flow run id never pauses
    # at a key an earlier attempt used (Prefect would take that pause as already answered).
    token = uuid4().hex[:8]
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
            entry = await pause_for_input(
                SignOff.with_initial_data(description=describe(approved)),
                timeout=timeout_seconds,
                poll_interval=pause_poll_seconds(),
                key=f"{signoff_key_prefix(proposal.id)}{attempt}-{token}",
            )
        except FlowPauseTimeout:
            records.set_proposal_status(proposal.id, "failed", reason="sign-off window closed")
            raise ApprovalError(
                f"proposal #{proposal.id}: no sign-off within {timeout_seconds} s; "
                f"start a new {runbook} run to propose again"
            ) from None
        paused += time.monotonic() - pause_started
        verdict = await review_and_announce(
            proposal, policy, subject, entry, decided, threshold, slack_block, relay
        )
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


async def review_and_announce(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    entry: SignOff,
    decided: dict[str, str],
    threshold: int,
    slack_block: str | None,
    relay: Relay | None,
) -> Verdict:
    """Review one form entry (relayed and recorded), count it in ``decided`` when
    accepted, and tell the thread."""
    verdict = await review_signoff(
        proposal,
        policy,
        subject,
        entry.member,
        entry.signature,
        entry.decision,
        entry.comment,
        already_signed=decided.keys(),
        relay=relay,
    )
    if verdict.accepted:
        decided[verdict.member] = verdict.decision
    await announce_progress(proposal, policy, subject, verdict, decided, threshold, slack_block)
    return verdict


def signoff_key_prefix(proposal_id: int) -> str:
    """Every sign-off pause key of ``proposal_id`` starts with this (the trailing dash keeps
    proposal 1's prefix from matching proposal 12's keys)."""
    return f"signoff-{proposal_id}-"


# What a sign-off found on chain but not in the records is recorded with.
FOUND_ON_CHAIN = "found on chain: relayed before the run stopped, recorded on resume"


async def earlier_entries(proposal: ProposalRecord) -> list[tuple[str, str, SignOff]]:
    """(flow run, pause key, entry) of every sign-off submitted to a pause of ``proposal``
    in this run or an earlier run of it, oldest first."""
    runs = records.proposal_flow_runs(proposal.id)
    current = flow_run.get_id()
    if current is not None and current not in runs:
        runs.append(current)
    prefix = f"paused-{signoff_key_prefix(proposal.id)}"
    found: list[tuple[datetime, str, str, SignOff]] = []
    async with get_client() as client:
        for run in runs:
            inputs = await client.filter_flow_run_input(
                UUID(run), key_prefix=prefix, limit=1000, exclude_keys=set()
            )
            for item in inputs:
                if not item.key.endswith("-response"):
                    continue
                try:
                    entry = SignOff.model_validate_json(item.value)
                except ValueError:  # not a form this flow saved; nothing to review
                    continue
                found.append((item.created or datetime.now(UTC), run, item.key, entry))
    found.sort(key=lambda f: f[0])
    return [(run, key, entry) for _, run, key, entry in found]


async def pick_up_unrecorded(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    threshold: int,
    slack_block: str | None,
    relay: Relay | None,
) -> int:
    """Review, once, every earlier entry whose signature the records do not hold; returns
    how many were reviewed. A signature is one member's one decision over this proposal's
    line, so a recorded signature means the entry was reviewed already."""
    history = records.proposal_approvals(proposal.id)
    reviewed = {a.signature for a in history if a.signature}
    decided = {a.member: a.decision for a in history if a.accepted}
    count = 0
    for run, key, entry in await earlier_entries(proposal):
        signature = entry.signature.strip()
        if not signature or signature in reviewed:
            continue  # an empty signature counts for nothing; a recorded one was reviewed
        reviewed.add(signature)
        get_run_logger().info("reviewing the sign-off left at %s of run %s", key, run)
        await review_and_announce(
            proposal, policy, subject, entry, decided, threshold, slack_block, relay
        )
        count += 1
    return count


async def record_chain_votes(proposal: ProposalRecord, chain_signoffs: ChainSignoffs) -> int:
    """Record the votes upgrade_manager holds for ``proposal`` that the records lack (a
    vote relayed just before a kill, its entry gone); returns how many."""
    on_chain, _ = await chain_signoffs()
    recorded = {a.member for a in records.proposal_approvals(proposal.id) if a.accepted}
    missing = {m: d for m, d in on_chain.items() if m not in recorded}
    for member, decision in missing.items():
        records.record_approval(
            proposal.id, member=member, decision=decision, accepted=True, reason=FOUND_ON_CHAIN
        )
        get_run_logger().warning("%s of %s %s", decision, member, FOUND_ON_CHAIN)
    return len(missing)


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


# --- The veto during the timelock ------------------------------------------------------

# A timelock pause's own timeout is set this much past the timelock's end: the flow ends
# the pause itself when the timelock passes, because a pause that times out is failed by
# the Prefect server (FailExpiredPauses) and can no longer be resumed.
VETO_PAUSE_GRACE_SECONDS = 300
# Shorter waits are not worth a form nobody could submit in time.
MIN_VETO_PAUSE_SECONDS = 2.0


class TimelockVeto(RunInput):
    """One member's signed cancel of an approved proposal, entered while it waits out its
    timelock."""

    member: str = Field(
        title="Your public key",
        description="The base58 address of your member key (`solana address -k <keypair>`).",
    )
    signature: str = Field(
        title="Signature of the cancel message",
        description="The base58 signature printed by `runbooks sign --action cancel` or "
        "`solana sign-offchain-message` over the exact cancel message shown above.",
    )
    comment: str = Field(
        default="", title="Why cancel", description="Optional note, kept in the records."
    )


@dataclass(frozen=True)
class VetoOutcome:
    closed: Literal["rejected", "cancelled"] | None = None  # None: the timelock passed
    reason: str | None = None
    seconds_waited: float = 0.0


async def wait_out_timelock_with_veto(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    *,
    ends: datetime,
    describe: Callable[[datetime, str | None], str],
    slack_block: str | None,
    chain_signoffs: ChainSignoffs | None = None,
    relay: Relay | None = None,
) -> VetoOutcome:
    """Pause until ``ends`` with a form that takes one member's signed ``cancel``.

    ``describe(now, refused)`` writes the form's markdown (``refused``: why the last
    cancel was refused). A cancel is reviewed like a sign-off (any member, also one who
    approved), relayed on chain with ``relay``, and recorded accepted or refused; a refused
    one pauses again for the time left. Returns when the timelock has passed, or with the
    member whose cancel was accepted.
    """
    logger = get_run_logger()
    attempt = len(records.proposal_approvals(proposal.id))
    started = time.monotonic()
    refused: str | None = None
    while (left := (ends - datetime.now(UTC)).total_seconds()) > 0:
        if chain_signoffs is not None:  # cancelled on chain directly (cancel_signed)
            _, closed = await chain_signoffs()
            if closed in ("cancelled", "rejected"):
                return VetoOutcome(closed, f"{closed} on chain", time.monotonic() - started)
        if left < MIN_VETO_PAUSE_SECONDS:
            await asyncio.sleep(left)
            break
        attempt += 1
        # Unique per proposal and attempt, and across restarts of the run.
        key = f"timelock-{proposal.id}-{attempt}-{int(time.time())}"
        entry = await pause_for_veto(describe(datetime.now(UTC), refused), left, key)
        if entry is None:
            break
        # Any member may cancel, also one who approved (upgrade_manager agrees).
        verdict = await review_signoff(
            proposal,
            policy,
            subject,
            entry.member,
            entry.signature,
            "cancel",
            entry.comment,
            already_signed=(),
            relay=relay,
        )
        await notify(
            *messages.timelock_cancel(
                proposal_id=proposal.id,
                member=policy.label(verdict.member) if verdict.member else "an empty key",
                accepted=verdict.accepted,
                reason=verdict.reason,
                comment=entry.comment.strip(),
            ),
            slack_block=slack_block,
            proposal_id=proposal.id,
        )
        if verdict.accepted:
            logger.warning("cancel accepted from %s during the timelock", verdict.member)
            return VetoOutcome(
                "cancelled", f"cancelled by {verdict.member}", time.monotonic() - started
            )
        refused = verdict.reason
        logger.warning("cancel refused: %s", verdict.reason)
    return VetoOutcome(None, seconds_waited=time.monotonic() - started)


async def review_signoff(
    proposal: ProposalRecord,
    policy: Policy,
    subject: Signable,
    member: str,
    signature: str,
    decision: Action,
    comment: str,
    *,
    already_signed: Collection[str],
    relay: Relay | None,
) -> Verdict:
    """Review one entry, relay it when accepted (the program's verdict counts), record it."""
    # On chain the program also accepts the governance address as application domain
    # (wallets that let the caller set it); off chain only the CLI's zero domain.
    domains = (ZERO_DOMAIN,)
    if relay is not None and proposal.governance:
        domains += (bytes(parse_pubkey(proposal.governance, "governance")),)
    verdict = signoff.review(
        subject, policy, member, signature, decision, already_signed, domains=domains
    )
    form = verdict.form
    if verdict.accepted and relay is not None:
        verdict = await relay(verdict, signature)
    # The records keep which envelope the member's tool signed (the relay's verdict may
    # not carry it; the signature is the one reviewed here).
    form = (verdict.form or form) if verdict.accepted else None
    records.record_approval(
        proposal.id,
        member=verdict.member,
        decision=verdict.decision,
        accepted=verdict.accepted,
        signature=signature.strip() or None,
        comment=comment.strip() or None,
        reason=verdict.reason,
        envelope=form.envelope if form is not None else None,
    )
    return verdict


async def pause_for_veto(description: str, seconds: float, key: str) -> TimelockVeto | None:
    """Pause with the veto form for ``seconds``; the entry, or None when they passed."""
    try:
        return await asyncio.wait_for(
            pause_for_input(
                TimelockVeto.with_initial_data(description=description),
                timeout=int(seconds) + VETO_PAUSE_GRACE_SECONDS,
                poll_interval=pause_poll_seconds(),
                key=key,
            ),
            timeout=seconds,
        )
    except TimeoutError:
        return await _end_veto_pause(key)


async def _end_veto_pause(key: str) -> TimelockVeto | None:
    """Set the paused run running again; an entry submitted at the last moment counts."""
    current = flow_run.get_id()
    assert current is not None  # pause_flow_run ran inside this flow run
    run_id = UUID(current)
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.is_paused():
            result = await client.set_flow_run_state(run_id, Running())
            if result.status != SetStateStatus.ACCEPT:
                reason = getattr(result.details, "reason", "") or ""
                raise ApprovalError(f"the timelock's pause could not end: {reason}")
    response = await aread_flow_run_input(
        keyset_from_base_key(f"paused-{key}")["response"], flow_run_id=run_id
    )
    return TimelockVeto(**response) if response else None

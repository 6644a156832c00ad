"""The steps every runbook shares when a Squads v4 multisig holds the authority: record
the proposal with the multisig's own voters, threshold and time lock; tell the members
where to vote; wait for their approval and the time lock, suspending a deployment's run
on long waits. The vault transaction's creation and execution are ``tasks.squads``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import deployment, flow_run

from blocks.cluster import SolanaCluster
from blocks.multisig import MultisigPolicy
from domain import messages
from domain.report import fields_table
from flows._pause import inline_timelock_limit_seconds
from programs.squads.client import Multisig, Proposal
from store.records import proposals as proposals_records
from store.records.proposals import ProposalRecord
from tasks import records, squads_audit
from tasks import squads as squads_tasks
from tasks.notify import open_thread
from tasks.records import current_run_id, records_engine


def voters_of(multisig: Multisig) -> dict[str, Any]:
    """The proposal record's members, threshold and time lock: the multisig's, as read."""
    return {
        "members": [str(k) for k in multisig.voters],
        "threshold": multisig.threshold,
        "timelock_seconds": multisig.time_lock,
    }


async def announce_and_wait(
    cluster: SolanaCluster,
    policy_config: MultisigPolicy,
    proposal: ProposalRecord,
    created: squads_tasks.SquadsUpgrade,
    slack_block: str | None,
) -> tuple[ProposalRecord, Proposal]:
    """Record the created proposal's address, tell the members, wait for approval and the
    time lock; the proposal record and the approved Proposal."""
    proposal = proposals_records.set_onchain_address(
        records_engine(), proposal.id, created.proposal, flow_run_id=current_run_id()
    )
    await announce_squads(proposal, created, cluster, slack_block)
    return await wait_for_squads(cluster, policy_config, proposal, created)


async def wait_for_squads(
    cluster: SolanaCluster,
    policy_config: MultisigPolicy,
    proposal: ProposalRecord,
    created: squads_tasks.SquadsUpgrade,
) -> tuple[ProposalRecord, Proposal]:
    """Wait for the members' approval, then the multisig's time lock on the cluster clock.

    On a deployment's run a wait longer than ``inline_timelock_limit_seconds`` suspends
    the run instead of holding a worker (votes can take days); resumed, the flow runs
    again, finds its records and created proposal, and this reads the Proposal afresh.
    The sign-off window counts from the proposal's record, across suspensions. A
    rejection or cancel is recorded on the proposal and ends the run."""
    multisig_address = created.multisig
    poll = policy_config.squads_poll_seconds
    suspends = bool(deployment.get_id())
    opened = proposal.created_at
    if opened.tzinfo is None:  # the records keep UTC
        opened = opened.replace(tzinfo=UTC)
    try:
        while True:
            elapsed = (datetime.now(UTC) - opened).total_seconds()
            approved = await squads_tasks.wait_for_approval(
                cluster,
                created,
                poll_seconds=poll,
                timeout_seconds=max(0.0, policy_config.signoff_timeout_seconds - elapsed),
                inline_seconds=inline_timelock_limit_seconds() if suspends else None,
            )
            if approved.status.kind in ("Approved", "Executed", "Executing"):
                break
            get_run_logger().info(
                "Squads proposal %d still %s; suspending until resumed",
                created.transaction_index,
                approved.status.kind,
            )
            await suspend_flow_run(key=f"squads-approval-{proposal.id}-{int(time.time())}")
        if approved.status.timestamp is not None:
            proposal = records.mark_threshold_met(
                proposal.id, at=datetime.fromtimestamp(approved.status.timestamp, UTC)
            )
        multisig = await squads_audit.read_squads_multisig(cluster, multisig_address)
        _, now = await squads_tasks.read_proposal_and_clock(cluster, created)
        left = squads_tasks.time_lock_left(approved, multisig.time_lock, now)
        if left > inline_timelock_limit_seconds() and suspends:
            get_run_logger().info("Squads time lock: %d s left; suspending", left)
            await suspend_flow_run(key=f"squads-timelock-{proposal.id}-{int(time.time())}")
        approved = await squads_tasks.wait_out_time_lock(
            cluster, created, multisig.time_lock, poll_seconds=poll
        )
    except squads_tasks.SquadsProposalClosed as closed:
        records.set_proposal_status(proposal.id, closed.status, reason=str(closed))
        raise
    return proposal, approved


# How a Squads announcement names a proposal's kind.
KIND_WORDS = {"set-authority": "key rotation", "rollback": "emergency rollback"}


async def announce_squads(
    proposal: ProposalRecord,
    created: squads_tasks.SquadsUpgrade,
    cluster: SolanaCluster,
    slack_block: str | None,
) -> None:
    """Where members vote: Slack (once, the thread is recorded) and an artifact with the
    proposal's address, index, its page in the Squads app and the approve command."""
    command = created.approve_command(cluster.rpc_urls[0])
    text, blocks = messages.squads_proposal_created(
        proposal_id=proposal.id,
        program=proposal.program_id,
        buffer=proposal.buffer or "",
        sha256=proposal.buffer_hash or "",
        description=proposal.description,
        proposer=proposal.proposer,
        multisig=created.multisig,
        transaction_index=created.transaction_index,
        proposal_address=created.proposal,
        threshold=proposal.threshold,
        voters=len(proposal.members),
        time_lock=proposal.timelock_seconds,
        app_link=created.link,
        approve_command=command,
        run_url=flow_run.ui_url,
        kind=KIND_WORDS.get(proposal.kind, proposal.kind),
    )
    await open_thread(proposal.id, text, blocks, slack_block)
    await acreate_markdown_artifact(
        key=f"squads-proposal-{proposal.id}",
        description=f"Squads proposal of {proposal.kind} #{proposal.id}",
        markdown="\n".join(
            [
                f"# {KIND_WORDS.get(proposal.kind, proposal.kind).capitalize()} proposal "
                f"#{proposal.id} in Squads",
                "",
                *fields_table(
                    [
                        ("Multisig", f"`{created.multisig}`"),
                        ("Transaction index", str(created.transaction_index)),
                        ("Proposal", f"`{created.proposal}`"),
                        ("Vault transaction", f"`{created.transaction}`"),
                        ("Squads app", f"[{created.link}]({created.link})"),
                        ("Program", f"`{proposal.program_id}`"),
                        ("Buffer sha256", f"`{proposal.buffer_hash}`"),
                    ]
                ),
                "",
                "Approve with the Squads app, the Squads CLI, a Ledger, or:",
                "",
                f"    {command}",
            ]
        ),
    )

"""Runbook: upgrade a program.

Proposing, approving and executing an upgrade, as the operations runbook describes:

1. Audit the multisig policy (members, threshold, timelock, description).
2. Verify the buffer on chain: a loader Buffer, the program's authority, the expected
   verifiable-build hash. Given the built ``.so`` instead, check its hash first, then
   write the buffer (resuming a half-written one) and hand it to the authority.
3. Record the proposal and tell the members what to sign.
4. Collect sign-offs, one pause per sign-off, until the threshold is met (or the
   proposal is rejected or cancelled).
5. Wait out the timelock, counted from the moment the threshold was met.
6. Extend the ProgramData when the new binary needs more room (ExtendProgram), then
   execute the Upgrade through the BPF Upgradeable Loader.
7. Verify on chain, record, and publish a report.

On a Squads v4 policy the same page runs through the team's multisig instead
(``upgrade_under_squads``): the vault transaction and its proposal stand for steps 3-4,
the Proposal account read from chain for the sign-offs, the multisig's time lock on the
cluster clock for step 5, ``vault_transaction_execute`` for step 6.

A restart (a suspended run resumed, or a crashed run retried) repeats nothing: the
proposal is found by its key, sign-offs come from the records, and execution reads the
chain before it sends.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled
from solders.pubkey import Pubkey

from blocks import load_block, preload
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.slack import SlackChannel
from core.approval import ApprovalSubject
from core.errors import InputError, ProposalClosed
from core.idempotency import NO_RUN, idempotency_key
from core.keys import parse_pubkey, parse_sha256
from domain import messages, signoff, veto
from domain import policy as policy_audit
from domain.forms import titled_form
from domain.policy import Policy
from domain.report import fields_table, linked
from flows import _signoff as signoffs
from flows import _squads as squads_steps
from flows._pause import inline_timelock_limit_seconds
from flows._signoff import SignOffOutcome, approval_subject
from programs.rpc import ProgramInfo
from store.records import proposals as proposals_records
from store.records.proposals import ProposalRecord
from tasks import archive, chain, governance, kill_switch, records, squads_audit
from tasks import buffer as buffer_tasks
from tasks import squads as squads_tasks
from tasks.notify import notify, open_thread
from tasks.records import current_run_id


def proposal_key(cluster: str, program_id: str, buffer: str, run_id: str | None) -> str:
    """Identifies the proposal of one run, so a restarted run finds it again."""
    return idempotency_key("upgrade", cluster, program_id, buffer, run_id or NO_RUN)


@flow(name="program-upgrade", persist_result=False)
@titled_form
async def upgrade_program(
    program_id: str,
    description: str,
    proposer: str,
    # Plain strings, "" for not given: the Run form shows a text box for each (an
    # optional str | None renders as a type picker in Prefect's form).
    buffer: str = "",
    program_file: str = "",
    expected_sha256: str | None = None,
    cluster_block: str = "localnet",
    policy_block: str = "localnet-multisig",
    authority_block: str = "localnet-upgrade-authority",
    fee_payer_block: str = "localnet-fee-payer",
    slack_block: str | None = None,
) -> Any:
    """Propose, sign off, wait out the timelock, execute and verify a program upgrade.

    Args:
        program_id: The upgradeable program to upgrade (base58 address).
        description: What changes and why, in plain ASCII; every member reads it.
        proposer: Who proposes: your name or key.
        buffer: A buffer already written on chain (`solana program write-buffer`), its
            authority set to the program's upgrade authority. Give this or program_file.
        program_file: The built .so on the worker: the run writes it to a buffer itself
            (resuming a half-written one) after checking it against expected_sha256.
            Give this or buffer.
        expected_sha256: The verifiable-build hash of the new binary (solana-verify); the
            buffer must match it, and so must program_file (required with it). Without
            it, the buffer's own hash is proposed and shown to every member.
        cluster_block: The SolanaCluster block of the cluster to upgrade on.
        policy_block: The MultisigPolicy block: members, threshold, timelock, backend.
        authority_block: The SolanaKeypair block of the upgrade authority (keypair
            backend only).
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        slack_block: The SlackChannel block to notify; empty logs the messages instead.
    """
    # Prefect's Run forms take each parameter's help from the Args above; their titles
    # come from @titled_form (Prefect 3.8.8 titles every parameter by its name).
    started = time.monotonic()
    logger = get_run_logger()
    parse_pubkey(program_id, "program id")
    if bool(buffer) == bool(program_file):
        raise InputError(
            "give one of buffer (a buffer written already) or program_file (the built .so, "
            f"written by this run), not {'both' if buffer else 'neither'}"
        )
    if buffer:
        parse_pubkey(buffer, "buffer")
    if expected_sha256:
        expected_sha256 = parse_sha256(expected_sha256, "expected_sha256")
    if program_file:
        if not expected_sha256:
            raise InputError(
                "program_file needs expected_sha256: the verifiable-build hash "
                "(`solana-verify get-executable-hash <file>`) the file must have"
            )
        buffer_tasks.read_program_file(program_file, expected_sha256)

    # 1. Policy audit, before anything is recorded.
    cluster = await load_block(SolanaCluster, cluster_block)
    policy_config = await load_block(MultisigPolicy, policy_block)
    policy = policy_config.policy(policy_block)
    policy_audit.check_backend(policy, "upgrade")
    if policy.backend == "squads":
        # The multisig's members, threshold and time lock are audited as read from chain.
        policy_audit.check_description(description)
    else:
        policy_audit.audit(policy, description)
    proposer = policy_audit.check_description(proposer, "proposer")
    if policy.backend == "squads":
        return await upgrade_under_squads(
            cluster,
            policy,
            policy_config,
            program_id=program_id,
            description=description.strip(),
            proposer=proposer,
            buffer=buffer,
            program_file=program_file,
            expected_sha256=expected_sha256,
            fee_payer_block=fee_payer_block,
            slack_block=slack_block,
            started=started,
        )
    # Every block the run uses loads now: one found missing after the proposal was
    # recorded would leave a proposal nobody can finish.
    await preload(
        (
            "authority_block",
            SolanaKeypair,
            None if policy.backend == "onchain" else authority_block,
        ),
        ("fee_payer_block", SolanaKeypair, fee_payer_block),
        ("slack_block", SlackChannel, slack_block or None),
    )
    onchain = (
        await governance.load_governance(
            cluster,
            policy,
            policy_config.governance,
            policy_config.governance_program,
            fee_payer_block,
        )
        if policy.backend == "onchain"
        else None
    )
    authority = (
        Pubkey.from_string(onchain.authority)
        if onchain is not None
        else (await load_block(SolanaKeypair, authority_block)).keypair().pubkey()
    )

    # 2. Written by this run from the .so (resumed on a restart), handed to the authority.
    if program_file:
        assert expected_sha256 is not None  # checked above
        buffer = await buffer_tasks.write_program_buffer(
            cluster,
            program_id,
            program_file,
            expected_sha256,
            buffer_tasks.buffer_purpose(
                cluster.cluster, program_id, expected_sha256, current_run_id()
            ),
            fee_payer_block,
            authority_block=None if onchain is not None else authority_block,
            governance_authority=onchain.authority if onchain is not None else None,
        )

    # 2-3. Verify the buffer and record the proposal (once per run).
    key = proposal_key(cluster.cluster, program_id, buffer, current_run_id())
    proposal = records.proposal_by_key(key)
    if proposal is None:
        # The signed line names the cluster; onchain: it must be the governance's cluster.
        genesis = await governance.cluster_genesis(cluster, onchain)
        _, buf = await chain.inspect_upgrade(
            cluster, program_id, buffer, str(authority), expected_sha256
        )
        proposal = records.record_proposal(
            key=key,
            kind="upgrade",
            cluster=cluster.cluster,
            backend=policy.backend,
            governance=onchain.governance if onchain is not None else str(authority),
            program_id=program_id,
            buffer=buffer,
            buffer_hash=buf.sha256,
            description=description,
            proposer=proposer,
            members=list(policy.members),
            threshold=policy.threshold,
            timelock_seconds=policy.timelock_seconds,
            genesis_hash=genesis,
        )
        if onchain is not None:
            proposal = await governance.create_proposal(cluster, onchain, proposal)
        await announce(proposal, policy, cluster, slack_block)
    else:
        logger.info("resuming proposal #%d (%s)", proposal.id, proposal.status)
        if onchain is not None:  # finds the on-chain proposal this run created, or creates it
            proposal = await governance.create_proposal(cluster, onchain, proposal)
        # Killed before the thread was recorded: announce now (once: the thread is recorded).
        await announce(proposal, policy, cluster, slack_block)

    # 4. Sign-offs.
    outcome = await collect_signoffs(
        proposal, policy, policy_config.signoff_timeout_seconds, cluster, slack_block, onchain
    )
    await publish_approvals(proposal, policy)
    if outcome.closed == "cancelled":
        records.set_proposal_status(proposal.id, "cancelled", reason=outcome.reason)
        return Cancelled(message=f"proposal #{proposal.id} cancelled: {outcome.reason}")
    if outcome.closed == "rejected":
        records.set_proposal_status(proposal.id, "rejected", reason=outcome.reason)
        raise ProposalClosed(f"proposal #{proposal.id} rejected: {outcome.reason}")
    proposal = (
        await governance.mark_threshold_met(cluster, onchain, proposal)
        if onchain is not None
        else records.mark_threshold_met(proposal.id)
    )
    await notify(
        *messages.timelock_started(
            proposal_id=proposal.id, executes_after=_iso(proposal.timelock_ends_at)
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )

    # 5. Timelock: any one member may still cancel, in the run's form.
    timelock = await wait_out_timelock(proposal, policy, cluster, slack_block, onchain)
    if timelock.closed is not None:
        records.set_proposal_status(proposal.id, timelock.closed, reason=timelock.reason)
        await publish_approvals(proposal)
        message = f"proposal #{proposal.id} {timelock.closed} in its timelock: {timelock.reason}"
        if timelock.closed == "rejected":
            raise ProposalClosed(message)
        return Cancelled(message=message)
    waited = timelock.seconds_waited

    # 6. Execute (idempotent) and 7. verify. Not while the kill switch is engaged; the
    # binary being replaced is archived first (the emergency rollback restores it).
    kill_switch.check_kill_switch(cluster.cluster, program_id, "upgrade")

    before, after, signature = await execute_verified(
        cluster,
        proposal,
        proposal.buffer_hash or "",
        onchain=onchain,
        approvals=len(outcome.approved_by),
        authority_block=authority_block,
        fee_payer_block=fee_payer_block,
    )
    await notify(
        *messages.executed(
            proposal_id=proposal.id,
            program=program_id,
            signature=signature,
            new_hash=after.sha256,
            outcome="upgraded" if signature else "already at this hash",
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    result = {
        "backend": policy.backend,
        "onchain_proposal": proposal.onchain_address,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_hash": before.sha256,
        "new_hash": after.sha256,
        "approvals": outcome.approved_by,
        "signature": signature,
        "seconds": round(time.monotonic() - started, 2),
        # Waiting on people (sign-off pauses, including the poll interval) and the timelock.
        "seconds_waiting": round(waited + outcome.seconds_paused, 2),
    }
    await publish_report(proposal, result, cluster, policy)
    return result


async def upgrade_under_squads(
    cluster: SolanaCluster,
    policy: Policy,
    policy_config: MultisigPolicy,
    *,
    program_id: str,
    description: str,
    proposer: str,
    buffer: str,
    program_file: str,
    expected_sha256: str | None,
    fee_payer_block: str,
    slack_block: str | None,
    started: float,
) -> dict[str, Any]:
    """The upgrade when a Squads v4 multisig holds the upgrade authority (its vault).

    The runbook's key (the fee payer) proposes and executes; it never votes. Members
    approve in the Squads app, the Squads CLI, a Ledger or ``runbooks squads approve``.
    """
    await preload(
        ("fee_payer_block", SolanaKeypair, fee_payer_block),
        ("slack_block", SlackChannel, slack_block or None),
    )
    runbook_key = str((await load_block(SolanaKeypair, fee_payer_block)).keypair().pubkey())
    multisig_address = policy_config.squads_multisig
    spill = str(parse_pubkey(policy_config.squads_spill or runbook_key, "squads_spill"))

    # 1. The multisig as read from chain; the runbook's key: Initiate and Execute, no Vote.
    await squads_audit.audit_squads_multisig(cluster, policy, multisig_address, runbook_key)
    vault = str(squads_tasks.vault_of(multisig_address))

    # 2. The buffer: written by this run, or checked; its authority must be the vault.
    if program_file:
        assert expected_sha256 is not None  # checked by the flow
        buffer = await buffer_tasks.write_program_buffer(
            cluster,
            program_id,
            program_file,
            expected_sha256,
            buffer_tasks.buffer_purpose(
                cluster.cluster, program_id, expected_sha256, current_run_id()
            ),
            fee_payer_block,
            governance_authority=vault,
        )
    key = proposal_key(cluster.cluster, program_id, buffer, current_run_id())
    proposal = records.proposal_by_key(key)
    if proposal is None:
        if not program_file:
            await squads_tasks.hand_buffer_to_vault(
                cluster, program_id, buffer, multisig_address, expected_sha256, fee_payer_block
            )
        genesis = await governance.cluster_genesis(cluster, None)
        _, buf = await chain.inspect_upgrade(cluster, program_id, buffer, vault, expected_sha256)
        multisig = await squads_audit.read_squads_multisig(cluster, multisig_address)
        proposal = records.record_proposal(
            key=key,
            kind="upgrade",
            cluster=cluster.cluster,
            backend="squads",
            governance=multisig_address,
            program_id=program_id,
            buffer=buffer,
            buffer_hash=buf.sha256,
            description=description,
            proposer=proposer,
            **squads_steps.voters_of(multisig),
            genesis_hash=genesis,
        )

    # 3. The vault transaction holding the Upgrade and its proposal (once per run).
    created = await squads_tasks.create_upgrade_proposal(
        cluster, proposal, multisig_address, spill, fee_payer_block
    )

    # 4. Tell the members where to vote (once: the thread is recorded), and 5. wait for
    # their approval, then the multisig's time lock on the cluster clock.
    waiting_since = time.monotonic()
    proposal, approved = await squads_steps.announce_and_wait(
        cluster, policy_config, proposal, created, slack_block
    )
    waited = time.monotonic() - waiting_since

    # 6. Execute (vault_transaction_execute), verify the hash on chain, record.
    kill_switch.check_kill_switch(cluster.cluster, program_id, "upgrade")
    before, after, signature = await execute_verified(
        cluster,
        proposal,
        proposal.buffer_hash or "",
        onchain=None,
        approvals=len(approved.approved),
        authority_block="",
        fee_payer_block=fee_payer_block,
        squads=created,
    )
    await notify(
        *messages.executed(
            proposal_id=proposal.id,
            program=program_id,
            signature=signature,
            new_hash=after.sha256,
            outcome="upgraded" if signature else "already at this hash",
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    result: dict[str, Any] = {
        "backend": "squads",
        "onchain_proposal": created.proposal,
        "squads_multisig": multisig_address,
        "transaction_index": created.transaction_index,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_hash": before.sha256,
        "new_hash": after.sha256,
        "approvals": [str(k) for k in approved.approved],
        "signature": signature,
        "seconds": round(time.monotonic() - started, 2),
        # Waiting on the members' votes and the time lock (this attempt's).
        "seconds_waiting": round(waited, 2),
    }
    await publish_report(proposal, result, cluster, policy)
    return result


async def execute_verified(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    expected_sha256: str,
    *,
    onchain: governance.OnchainGovernance | None,
    approvals: int,
    authority_block: str,
    fee_payer_block: str,
    squads: squads_tasks.SquadsUpgrade | None = None,
) -> tuple[ProgramInfo, ProgramInfo, str | None]:
    """The one execution step of the upgrade and the rollback: archive the binary being
    replaced, send the Upgrade (through upgrade_manager with ``onchain``, through the
    Squads vault with ``squads``, else signed by
    ``authority_block``; None: the chain already held it), check the new hash
    is ``expected_sha256``, record the execution. Returns (before, after, signature).

    An earlier attempt's execution that landed (a run killed right after sending) is
    found in the write-ahead journal with the program as it was before: that is what
    gets recorded, and nothing is archived or sent again."""
    earlier = await chain.landed_execution(cluster, proposal.id)
    if earlier is not None:
        signature, before = earlier
    else:
        # A larger binary needs room first; no authority signs it, so no sign-off either.
        await buffer_tasks.make_room(
            cluster,
            proposal.program_id,
            proposal.buffer or "",
            fee_payer_block,
            proposals_records.proposal_subject(proposal.id),
        )
        await archive.archive_program(cluster, proposal.program_id, proposal_id=proposal.id)
        before = await chain.read_program(cluster, proposal.program_id)
        if onchain is not None:
            signature = await governance.execute_upgrade(cluster, onchain, proposal)
        elif squads is not None:
            signature = await squads_tasks.send_squads_execution(
                cluster, proposal, squads, fee_payer_block
            )
        else:
            signature = await chain.send_upgrade(
                cluster, proposal, approvals, authority_block, fee_payer_block
            )
    after = await chain.verify_upgrade(cluster, before, expected_sha256)
    records.record_execution(
        proposal.id,
        outcome="upgraded" if signature else "already-applied",
        signature=signature,
        old_hash=before.sha256,
        new_hash=after.sha256,
        slot_before=before.slot,
        slot_after=after.slot,
    )
    return before, after, signature


async def announce(
    proposal: ProposalRecord,
    policy: Policy,
    cluster: SolanaCluster,
    slack_block: str | None,
    *,
    subject: ApprovalSubject | None = None,
) -> None:
    """Open the proposal's Slack thread: what to sign and how, and who must sign (the
    members with a Slack user id are @mentioned). ``subject``: the line to sign, when it
    is not an upgrade's (an on-chain emergency upgrade's, read from the chain)."""
    if subject is None:
        subject = approval_subject(proposal)
    text, blocks = messages.proposal_created(
        proposal_id=proposal.id,
        program=proposal.program_id,
        buffer=proposal.buffer or "",
        sha256=proposal.buffer_hash or "",
        description=proposal.description,
        proposer=proposal.proposer,
        threshold=policy.threshold,
        members=len(policy.members),
        approval_message=subject.message("approve"),
        run_url=flow_run.ui_url,
        number=subject.proposal,
        kind=proposal.kind,
        sign_command=(
            f"`runbooks sign --onchain-proposal {proposal.onchain_address} "
            f"--url <rpc> --keypair <file>`"
            if proposal.onchain_address
            else None
        ),
        status=messages.signoff_status(
            have=0,
            need=policy.threshold,
            signed=[],
            missing=[(policy.label(m), policy.member(m).slack_user_id) for m in policy.members],
        ),
    )
    await open_thread(proposal.id, text, blocks, slack_block)


async def collect_signoffs(
    proposal: ProposalRecord,
    policy: Policy,
    timeout_seconds: int,
    cluster: SolanaCluster,
    slack_block: str | None,
    onchain: governance.OnchainGovernance | None = None,
    *,
    subject: ApprovalSubject | None = None,
    kind: str | None = None,
) -> SignOffOutcome:
    """Pause for sign-offs on an upgrade (or rollback) proposal until ``policy``'s
    threshold is met, or members reject or cancel.

    With the onchain backend each accepted sign-off is relayed to upgrade_manager, whose
    verdict is recorded, and who signed off is read back from the chain. ``subject`` and
    ``kind``: the line to sign and what the form calls the proposal, when not an upgrade's.
    """
    if subject is None:
        subject = approval_subject(proposal)

    def describe(approved_by: list[str]) -> str:
        attempts = records.proposal_approvals(proposal.id)
        return signoff.form_description(
            proposal_id=proposal.id,
            subject=subject,
            description=proposal.description,
            proposer=proposal.proposer,
            cluster=cluster.cluster,
            threshold=policy.threshold,
            members=list(policy.members),
            approved_by=approved_by,
            rpc_url=cluster.rpc_urls[0],
            explorer_link=cluster.explorer_link(proposal.program_id),
            kind=kind or proposal.kind,
            label=policy.label,
            last=attempts[-1] if attempts else None,
            onchain_address=proposal.onchain_address,
        )

    chain_signoffs, relay = onchain_hooks(cluster, onchain, proposal)
    return await signoffs.collect_signoffs(
        proposal,
        policy,
        subject,
        threshold=policy.threshold,
        timeout_seconds=timeout_seconds,
        describe=describe,
        slack_block=slack_block,
        runbook="upgrade",
        chain_signoffs=chain_signoffs,
        relay=relay,
    )


def onchain_hooks(
    cluster: SolanaCluster,
    onchain: governance.OnchainGovernance | None,
    proposal: ProposalRecord,
) -> tuple[signoffs.ChainSignoffs | None, signoffs.Relay | None]:
    """The chain's view of the sign-offs and the relay of one to upgrade_manager (onchain
    backend); neither for the keypair backend, where the records are the truth."""
    if onchain is None:
        return None, None

    async def chain_signoffs() -> tuple[dict[str, str], str | None]:
        return await governance.onchain_signoffs(cluster, onchain, proposal)

    async def relay(verdict: signoff.Verdict, signature: str) -> signoff.Verdict:
        return await governance.relay_signoff(cluster, onchain, proposal, verdict, signature)

    return chain_signoffs, relay


async def wait_out_timelock(
    proposal: ProposalRecord,
    policy: Policy | None = None,
    cluster: SolanaCluster | None = None,
    slack_block: str | None = None,
    onchain: governance.OnchainGovernance | None = None,
    *,
    subject: ApprovalSubject | None = None,
    kind: str = "upgrade",
) -> signoffs.VetoOutcome:
    """Wait until the timelock ends, in a pause whose form shows when the upgrade executes
    and takes one member's signed ``cancel`` (with ``policy`` and ``cluster``; without
    them the run just waits). With ``onchain`` a cancel is relayed to upgrade_manager.

    A long timelock in a deployment suspends the run (no worker held); resuming it after
    the timelock restarts the flow, which finds every earlier step done.
    """
    logger = get_run_logger()
    ends = proposal.timelock_ends_at
    assert ends is not None  # the threshold was met
    remaining = (ends - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        return signoffs.VetoOutcome()
    if remaining > inline_timelock_limit_seconds() and deployment.get_id():
        logger.info("timelock ends %s: suspending; resume this run after that", _iso(ends))
        await suspend_flow_run(key=f"timelock-{proposal.id}-{int(time.time())}")
    logger.info("timelock: waiting %.0f s (until %s)", remaining, _iso(ends))
    if policy is None or cluster is None:
        started = time.monotonic()
        while (left := (ends - datetime.now(UTC)).total_seconds()) > 0:
            await asyncio.sleep(min(left, 60))
        return signoffs.VetoOutcome(seconds_waited=time.monotonic() - started)

    if subject is None:
        subject = approval_subject(proposal)
    approved_by = [
        a.member
        for a in records.proposal_approvals(proposal.id)
        if a.accepted and a.decision == "approve"
    ]

    def describe(now: datetime, refused: str | None) -> str:
        return veto.form_description(
            proposal_id=proposal.id,
            subject=subject,
            description=proposal.description,
            proposer=proposal.proposer,
            cluster=cluster.cluster,
            approved_by=approved_by,
            executes_at=ends,
            now=now,
            refused=refused,
            label=policy.label,
            kind=kind,
        )

    chain_signoffs, relay = onchain_hooks(cluster, onchain, proposal)
    return await signoffs.wait_out_timelock_with_veto(
        proposal,
        policy,
        subject,
        ends=ends,
        describe=describe,
        slack_block=slack_block,
        chain_signoffs=chain_signoffs,
        relay=relay,
    )


async def publish_approvals(proposal: ProposalRecord, policy: Policy | None = None) -> None:
    """Every sign-off attempt on the proposal as a table artifact, refusals with reasons."""
    rows = [
        {
            "at": a.created_at.isoformat(timespec="seconds"),
            "name": policy.member(a.member).name if policy is not None else "",
            "member": a.member,
            "decision": a.decision,
            "accepted": "yes" if a.accepted else "refused",
            "envelope": a.envelope or "",
            "reason": a.reason or "",
            "comment": a.comment or "",
        }
        for a in records.proposal_approvals(proposal.id)
    ]
    await acreate_table_artifact(
        key=f"upgrade-approvals-{proposal.id}",
        table=rows,
        description=f"Sign-offs on upgrade proposal #{proposal.id}",
    )


async def publish_report(
    proposal: ProposalRecord,
    result: dict[str, Any],
    cluster: SolanaCluster,
    policy: Policy | None = None,
) -> None:
    def who(key: str) -> str:
        name = policy.member(key).name if policy is not None else ""
        return f"- {name}: `{key}`" if name else f"- `{key}`"

    approvals = "\n".join(who(m) for m in result["approvals"])
    link = cluster.explorer_link(proposal.program_id)
    await acreate_markdown_artifact(
        key=f"upgrade-report-{proposal.id}",
        description=f"Upgrade of {proposal.program_id}",
        markdown="\n".join(
            [
                f"# Upgrade proposal #{proposal.id}: executed",
                "",
                *fields_table(
                    [
                        ("Cluster", cluster.cluster),
                        ("Program", linked(proposal.program_id, link)),
                        ("Buffer", f"`{proposal.buffer}`"),
                        ("Old sha256", f"`{result['old_hash']}`"),
                        ("New sha256", f"`{result['new_hash']}`"),
                        ("Transaction", f"`{result['signature'] or 'none: already applied'}`"),
                        ("Backend", result["backend"]),
                        ("Description", proposal.description),
                        ("Proposer", proposal.proposer),
                        ("Seconds (waiting)", f"{result['seconds']} ({result['seconds_waiting']})"),
                    ]
                ),
                "",
                f"## Approvals ({len(result['approvals'])} of {proposal.threshold})",
                approvals,
            ]
        ),
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "?"

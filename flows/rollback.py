"""Runbook: emergency rollback to the binary an upgrade replaced.

Seed 000's "Emergency Rollback", with its "pause system operations" as the kill switch:

1. Pick the archived binary (the one the last upgrade replaced, or ``to_sha256``); it
   must still hash to its archived hash. Bad input stops here, before any write.
2. Engage the kill switch (recorded, and the program's own pause): nothing else writes.
3. Refuse when accounts were migrated to a layout the target binary may not read,
   naming them, unless forced with a recorded reason.
4. Write the archived binary to a new buffer; check its hash equals the archived hash.
   With the onchain backend the buffer is handed to the governance's authority PDA.
5. Record a ``rollback`` proposal; members sign off under the emergency policy (its own
   threshold and timelock), in the same pause form as an upgrade. With the onchain
   backend it is an emergency-upgrade proposal of upgrade_manager, which enforces the
   governance's emergency threshold and timelock; each sign-off is relayed to it.
6. Wait out the emergency timelock (any member may still cancel); archive the binary
   being replaced; upgrade (with the onchain backend upgrade_manager executes it: no
   upgrade key is held by anyone).
7. Verify the ProgramData hash equals the archived hash; record the execution.
8. Release the kill switch after its own sign-off.

With the squads backend steps 4-7 run through the team's multisig (``rollback_under_squads``):
the buffer is handed to its vault, members approve a vault transaction holding the
Upgrade in Squads under the multisig's one threshold and time lock; step 8 is the same
release, signed by the multisig's voters under its threshold.

The rollback is the one write the kill switch lets through: it does not run the upgrade
runbook (which refuses while the switch is engaged) but the same tasks.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.states import Cancelled

from blocks import load_block, preload
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.slack import SlackChannel
from core.errors import AuthorityMismatch, InputError, ProposalClosed, RecordsError
from core.idempotency import NO_RUN, idempotency_key
from core.keys import parse_pubkey, parse_sha256
from domain import governance as gov_rules
from domain import policy as policy_audit
from domain.forms import titled_form
from domain.policy import Policy
from domain.report import fields_table
from domain.rollback import check_archive, refuse_over_migrated
from flows import _squads as squads_steps
from flows.kill_switch import check_pause_block, emergency_policy, engage, release_with_signoff
from flows.upgrade import announce, collect_signoffs, execute_verified, wait_out_timelock
from programs.plugin import get_migrator
from store.records import archives as archives_records
from store.records import migrations as migrations_records
from store.records.archives import ArchiveRecord
from store.records.migrations import MigratedAccount
from store.records.proposals import ProposalRecord
from tasks import archive, chain, governance, records, squads_audit
from tasks import squads as squads_tasks
from tasks.chain import rpc_client
from tasks.migration import FETCH_LIMIT, fetch_accounts
from tasks.records import current_run_id, records_engine


def rollback_key(cluster: str, program_id: str, sha256: str, run_id: str | None) -> str:
    """Identifies the rollback proposal of one run, so a restarted run finds it again."""
    return idempotency_key("rollback", cluster, program_id, sha256, run_id or NO_RUN)


@flow(name="emergency-rollback", persist_result=False)
@titled_form
async def emergency_rollback(
    program_id: str,
    reason: str,
    proposer: str,
    to_sha256: str | None = None,
    force: bool = False,
    force_reason: str | None = None,
    release_kill_switch: bool = True,
    cluster_block: str = "localnet",
    policy_block: str = "localnet-multisig",
    authority_block: str = "localnet-upgrade-authority",
    fee_payer_block: str = "localnet-fee-payer",
    program_pause_block: str | None = None,
    slack_block: str | None = None,
) -> Any:
    """Roll a program back to the binary its last upgrade replaced, under the emergency
    policy, with the kill switch engaged.

    Args:
        program_id: The program to roll back (base58 address).
        reason: What went wrong; members read it, and it is recorded.
        proposer: The on-call engineer (name or key).
        to_sha256: The archived binary to restore; empty: the one the last upgrade
            replaced.
        force: Roll back although accounts were migrated to a layout the target may not
            read (needs a force reason).
        force_reason: Why forcing is safe; recorded.
        release_kill_switch: Ask for the release sign-off once the rollback is verified.
        cluster_block: The SolanaCluster block of the cluster the program is on.
        policy_block: The MultisigPolicy block; its emergency threshold and timelock apply.
        authority_block: The SolanaKeypair block of the upgrade authority (keypair
            backend only; the onchain and squads backends never load it).
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        program_pause_block: The ProgramPause block of the program's own pause; empty
            engages only the records' switch.
        slack_block: The SlackChannel block to notify; empty logs the messages instead.
    """
    started = time.monotonic()
    logger = get_run_logger()
    parse_pubkey(program_id, "program id")
    if to_sha256:
        to_sha256 = parse_sha256(to_sha256, "to_sha256")
    if force and not (force_reason and force_reason.strip()):
        raise InputError("force needs a force_reason: the records must say why it is safe")
    if force:
        force_reason = policy_audit.check_description(force_reason or "", "force_reason")
    cluster = await load_block(SolanaCluster, cluster_block)
    policy_config = await load_block(MultisigPolicy, policy_block)
    policy = policy_config.policy(policy_block)
    policy_audit.check_backend(policy, "emergency rollback")
    onchain = None
    squads_multisig: str | None = None
    if policy.backend == "squads":
        # The vault holds the authority; Squads has one threshold and one time lock, the
        # multisig's, which the rollback runs under (there is no emergency one).
        squads_multisig = policy_config.squads_multisig
        runbook_key = (await load_block(SolanaKeypair, fee_payer_block)).keypair().pubkey()
        await squads_audit.audit_squads_multisig(cluster, policy, squads_multisig, str(runbook_key))
        authority = str(squads_tasks.vault_of(squads_multisig))
    elif policy.backend == "onchain":
        # upgrade_manager holds the authority: no upgrade key is loaded, and the emergency
        # threshold and timelock are the ones the governance enforces.
        onchain = await governance.load_governance(
            cluster,
            policy,
            policy_config.governance,
            policy_config.governance_program,
            fee_payer_block,
        )
        state = await governance.governance_state(cluster, onchain)
        policy = gov_rules.with_chain_emergency(policy, state, onchain.governance)
        authority = onchain.authority
    else:
        authority = str((await load_block(SolanaKeypair, authority_block)).keypair().pubkey())
    if squads_multisig is None:
        policy_audit.audit(policy, reason, "reason")
    else:
        reason = policy_audit.check_description(reason, "reason")
    # Every block the run uses loads before anything is written.
    await preload(
        ("fee_payer_block", SolanaKeypair, fee_payer_block),
        ("slack_block", SlackChannel, slack_block or None),
    )
    if program_pause_block:
        await check_pause_block(program_pause_block, program_id)
    proposer = policy_audit.check_description(proposer, "proposer")
    emergency = emergency_policy(policy) if squads_multisig is None else policy

    # 1. The request: the archived binary, intact, of a program this authority holds
    # (refused before anything is written).
    before = await chain.read_program(cluster, program_id)
    if squads_multisig is not None and before.authority != authority:
        raise AuthorityMismatch(
            f"{program_id}'s upgrade authority is {before.authority}, not the Squads vault "
            f"{authority} of multisig {squads_multisig}: nothing was recorded or sent"
        )
    if onchain is not None and before.authority != authority:
        raise AuthorityMismatch(
            f"{program_id}'s upgrade authority is {before.authority}, not governance "
            f"{onchain.governance}'s authority {authority}: its upgrade_manager cannot roll it "
            "back; use the governance (multisig block) that holds it"
        )
    target = choose_target(cluster.cluster, program_id, to_sha256, before.sha256)
    logger.info("rolling %s back from %s to archived %s", program_id, before.sha256, target.sha256)
    # The cluster the signed line names (and, on chain, the governance's own cluster).
    genesis = await governance.cluster_genesis(cluster, onchain)

    # 2. Kill switch on.
    await engage(
        cluster,
        program_id,
        f"emergency rollback: {reason}",
        proposer,
        program_pause_block,
        fee_payer_block,
        slack_block,
    )

    # 3. Accounts the target may not read.
    at_risk = await migrated_on_chain(cluster, program_id, target.sha256)
    refuse_over_migrated(target.sha256, at_risk, force_reason=force_reason if force else None)
    if at_risk:
        records.audit(
            "rollback.forced",
            f"program:{cluster.cluster}:{program_id}",
            {
                "to_sha256": target.sha256,
                "reason": force_reason,
                "accounts": len(at_risk),
                "first": [a.address for a in at_risk[:20]],
            },
            actor=proposer,
        )
        logger.warning("forced over %d migrated accounts: %s", len(at_risk), force_reason)

    if squads_multisig is not None:
        return await rollback_under_squads(
            cluster,
            policy_config,
            program_id=program_id,
            target=target,
            reason=reason,
            proposer=proposer,
            at_risk=at_risk,
            force_reason=force_reason if force else None,
            fee_payer_block=fee_payer_block,
            slack_block=slack_block,
            genesis=genesis,
            started=started,
            policy=policy,
            release_kill_switch=release_kill_switch,
            program_pause_block=program_pause_block,
        )

    # 4-5. Buffer and proposal (once per run), then sign-off under the emergency policy.
    key = rollback_key(cluster.cluster, program_id, target.sha256, current_run_id())
    proposal = records.proposal_by_key(key)
    subject = None
    if proposal is None:
        buffer = await archive.write_archived_buffer(
            cluster,
            program_id,
            target.sha256,
            None if onchain is not None else authority_block,
            fee_payer_block,
            governance_authority=authority if onchain is not None else None,
        )
        description = (
            f"EMERGENCY ROLLBACK of {program_id} to archived binary {target.sha256} "
            f"(archive #{target.id}) under the emergency policy: {emergency.threshold} of "
            f"{len(emergency.members)} members, timelock {emergency.timelock_seconds} s: {reason}"
        )
        if at_risk:
            description += f" FORCED over {len(at_risk)} migrated accounts: {force_reason}"
        proposal = records.record_proposal(
            key=key,
            kind="rollback",
            cluster=cluster.cluster,
            backend=policy.backend,
            governance=onchain.governance if onchain is not None else authority,
            program_id=program_id,
            buffer=buffer.address,
            buffer_hash=buffer.sha256,
            description=description,
            proposer=proposer,
            members=list(emergency.members),
            threshold=emergency.threshold,
            timelock_seconds=emergency.timelock_seconds,
            genesis_hash=genesis,
        )
        if onchain is not None:  # an emergency-upgrade proposal on chain
            proposal = await governance.create_proposal(cluster, onchain, proposal)
            subject = await governance.signing_line(cluster, onchain, proposal)
    elif onchain is not None:  # finds the on-chain proposal this run created, or creates it
        proposal = await governance.create_proposal(cluster, onchain, proposal)
        subject = await governance.signing_line(cluster, onchain, proposal)
    # Also on a restart: a run killed before announcing announces now (the thread is
    # recorded once it was sent, so it is never sent twice).
    await announce(proposal, emergency, cluster, slack_block, subject=subject)
    outcome = await collect_signoffs(
        proposal,
        emergency,
        policy_config.signoff_timeout_seconds,
        cluster,
        slack_block,
        onchain,
        subject=subject,
        kind="emergency rollback",
    )
    if outcome.closed is not None:
        return closed(proposal, outcome.closed, f"{outcome.closed}: {outcome.reason}")
    proposal = (
        await governance.mark_threshold_met(cluster, onchain, proposal)
        if onchain is not None
        else records.mark_threshold_met(proposal.id)
    )

    # 6-7. Timelock (a member may still cancel), archive what is replaced, upgrade,
    # verify against the archive.
    timelock = await wait_out_timelock(
        proposal,
        emergency,
        cluster,
        slack_block,
        onchain,
        subject=subject,
        kind="emergency rollback",
    )
    if timelock.closed is not None:
        return closed(
            proposal, timelock.closed, f"{timelock.closed} during its timelock: {timelock.reason}"
        )

    before, after, signature = await execute_verified(
        cluster,
        proposal,
        target.sha256,
        onchain=onchain,
        approvals=len(outcome.approved_by),
        authority_block=authority_block,
        fee_payer_block=fee_payer_block,
    )
    # 8. Release the kill switch, after its own sign-off.
    released = await record_restored_and_release(
        cluster,
        proposal,
        target,
        after.sha256,
        backend=policy.backend,
        onchain_proposal=proposal.onchain_address,
        policy=policy,
        policy_config=policy_config,
        proposer=proposer,
        release_kill_switch=release_kill_switch,
        program_pause_block=program_pause_block,
        fee_payer_block=fee_payer_block,
        slack_block=slack_block,
    )
    result = {
        "backend": policy.backend,
        "onchain_proposal": proposal.onchain_address,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_hash": before.sha256,
        "new_hash": after.sha256,
        "archived_hash": target.sha256,
        "restored_hash": after.sha256,
        "archive_id": target.id,
        "signature": signature,
        "approvals": outcome.approved_by,
        "emergency_threshold": emergency.threshold,
        "emergency_timelock_seconds": emergency.timelock_seconds,
        "forced_over_accounts": len(at_risk),
        "kill_switch_engaged": released is None,
        "release_proposal_id": released.release_proposal_id if released else None,
        "seconds": round(time.monotonic() - started, 2),
    }
    await publish_report(proposal, result, at_risk, force_reason, cluster)
    return result


async def rollback_under_squads(
    cluster: SolanaCluster,
    policy_config: MultisigPolicy,
    *,
    program_id: str,
    target: ArchiveRecord,
    reason: str,
    proposer: str,
    at_risk: list[MigratedAccount],
    force_reason: str | None,
    fee_payer_block: str,
    slack_block: str | None,
    genesis: str | None,
    started: float,
    policy: Policy,
    release_kill_switch: bool,
    program_pause_block: str | None,
) -> Any:
    """Steps 4-8 when a Squads v4 vault holds the upgrade authority: the archived binary's
    buffer handed to the vault, a vault transaction holding the Upgrade and its proposal,
    the members' approval and the multisig's time lock (its one threshold), the upgrade
    verified against the archive, then (with ``release_kill_switch``) the release signed
    by the multisig's voters."""
    multisig_address = policy_config.squads_multisig
    vault = str(squads_tasks.vault_of(multisig_address))
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair().pubkey()
    spill = str(parse_pubkey(policy_config.squads_spill or str(payer), "squads_spill"))
    key = rollback_key(cluster.cluster, program_id, target.sha256, current_run_id())
    proposal = records.proposal_by_key(key)
    if proposal is None:
        buffer = await archive.write_archived_buffer(
            cluster, program_id, target.sha256, None, fee_payer_block, governance_authority=vault
        )
        multisig = await squads_audit.read_squads_multisig(cluster, multisig_address)
        description = (
            f"EMERGENCY ROLLBACK of {program_id} to archived binary {target.sha256} "
            f"(archive #{target.id}) under Squads multisig {multisig_address}: "
            f"{multisig.threshold} approvals, time lock {multisig.time_lock} s: {reason}"
        )
        if at_risk:
            description += f" FORCED over {len(at_risk)} migrated accounts: {force_reason}"
        proposal = records.record_proposal(
            key=key,
            kind="rollback",
            cluster=cluster.cluster,
            backend="squads",
            governance=multisig_address,
            program_id=program_id,
            buffer=buffer.address,
            buffer_hash=buffer.sha256,
            description=description,
            proposer=proposer,
            **squads_steps.voters_of(multisig),
            genesis_hash=genesis,
        )
    created = await squads_tasks.create_upgrade_proposal(
        cluster, proposal, multisig_address, spill, fee_payer_block
    )
    try:
        proposal, approved = await squads_steps.announce_and_wait(
            cluster, policy_config, proposal, created, slack_block
        )
    except squads_tasks.SquadsProposalClosed as refused:
        message = f"{refused} The kill switch stays engaged; release it when safe."
        if refused.status == "rejected":
            raise ProposalClosed(message) from None
        return Cancelled(message=message)
    before, after, signature = await execute_verified(
        cluster,
        proposal,
        target.sha256,
        onchain=None,
        approvals=len(approved.approved),
        authority_block="",
        fee_payer_block=fee_payer_block,
        squads=created,
    )
    released = await record_restored_and_release(
        cluster,
        proposal,
        target,
        after.sha256,
        backend="squads",
        onchain_proposal=created.proposal,
        policy=policy,
        policy_config=policy_config,
        proposer=proposer,
        release_kill_switch=release_kill_switch,
        program_pause_block=program_pause_block,
        fee_payer_block=fee_payer_block,
        slack_block=slack_block,
        squads_multisig=multisig_address,
    )
    result = {
        "backend": "squads",
        "onchain_proposal": created.proposal,
        "squads_multisig": multisig_address,
        "transaction_index": created.transaction_index,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_hash": before.sha256,
        "new_hash": after.sha256,
        "archived_hash": target.sha256,
        "restored_hash": after.sha256,
        "archive_id": target.id,
        "signature": signature,
        "approvals": [str(k) for k in approved.approved],
        "emergency_threshold": proposal.threshold,
        "emergency_timelock_seconds": proposal.timelock_seconds,
        "forced_over_accounts": len(at_risk),
        "kill_switch_engaged": released is None,
        "release_proposal_id": released.release_proposal_id if released else None,
        "seconds": round(time.monotonic() - started, 2),
    }
    await publish_report(proposal, result, at_risk, force_reason, cluster)
    return result


async def record_restored_and_release(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    target: ArchiveRecord,
    restored_sha256: str,
    *,
    backend: str,
    onchain_proposal: str | None,
    policy: Policy,
    policy_config: MultisigPolicy,
    proposer: str,
    release_kill_switch: bool,
    program_pause_block: str | None,
    fee_payer_block: str,
    slack_block: str | None,
    squads_multisig: str | None = None,
) -> Any:
    """The last steps on every backend: the restored hash put on the audit trail, then,
    when asked, the kill switch released after its own sign-off (signed by the multisig's
    voters under Squads). Returns the release, or None while the switch stays engaged."""
    program_id = proposal.program_id
    records.audit(
        "rollback.verified",
        f"program:{cluster.cluster}:{program_id}",
        {
            "proposal_id": proposal.id,
            "archive_id": target.id,
            "archived_sha256": target.sha256,
            "restored_sha256": restored_sha256,
            "backend": backend,
            "onchain_proposal": onchain_proposal,
        },
        actor=proposer,
    )
    if not release_kill_switch:
        return None
    return await release_with_signoff(
        cluster,
        program_id,
        policy,
        policy_config.signoff_timeout_seconds,
        reason=f"rollback #{proposal.id} verified at {restored_sha256}",
        actor=proposer,
        program_pause_block=program_pause_block,
        fee_payer_block=fee_payer_block,
        slack_block=slack_block,
        squads_multisig=squads_multisig,
    )


def closed(proposal: ProposalRecord, status: str, why: str) -> State:
    """End the run as the upgrade's does: cancelled, or failed when rejected; the kill
    switch stays engaged either way."""
    records.set_proposal_status(proposal.id, status, reason=why)
    message = (
        f"rollback proposal #{proposal.id} {why}. The kill switch stays engaged; release it "
        "with the kill-switch runbook when safe."
    )
    if status == "rejected":
        raise ProposalClosed(message)
    return Cancelled(message=message)


def choose_target(
    cluster: str, program_id: str, to_sha256: str | None, current: str
) -> ArchiveRecord:
    """The archive to restore: the one asked for, else the newest that is not live."""
    engine = records_engine()
    if to_sha256:
        target = archives_records.get_archive(engine, cluster, program_id, to_sha256)
        if target is None:
            raise RecordsError(
                f"no archived binary {to_sha256} of {program_id} on {cluster}; the upgrade "
                "runbook archives each binary it replaces (see program_archives)"
            )
    else:
        target = archives_records.latest_archive(engine, cluster, program_id, excluding=current)
        if target is None:
            raise RecordsError(
                f"no archived binary of {program_id} on {cluster} other than the live one; "
                "nothing to roll back to"
            )
    if target.sha256 == current:
        raise InputError(f"{program_id} already runs archived binary {current}")
    check_archive(target)
    return target


async def migrated_on_chain(
    cluster: SolanaCluster, program_id: str, target_sha256: str
) -> list[MigratedAccount]:
    """Accounts migrations moved to a layout another binary wrote, still holding that
    layout on chain (the records say which; the chain confirms)."""
    recorded = migrations_records.migrated_accounts(
        records_engine(), cluster.cluster, program_id, written_by_other_than=target_sha256
    )
    if not recorded:
        return []
    still: list[MigratedAccount] = []
    async with rpc_client(cluster) as client:
        for start in range(0, len(recorded), FETCH_LIMIT):
            chunk = recorded[start : start + FETCH_LIMIT]
            datas = await fetch_accounts(client, [a.address for a in chunk])
            for account, data in zip(chunk, datas, strict=True):
                if data is not None and _still_migrated(account, data):
                    still.append(account)
    return still


def _still_migrated(account: MigratedAccount, data: bytes) -> bool:
    try:
        migrator = get_migrator(account.migrator)
    except InputError:
        return True  # a migrator this code no longer knows: assume the account is at risk
    return migrator.layout_version(data) == account.to_version


async def publish_report(
    proposal: ProposalRecord,
    result: dict[str, Any],
    at_risk: list[MigratedAccount],
    force_reason: str | None,
    cluster: SolanaCluster,
) -> None:
    lines = [
        f"# Emergency rollback #{proposal.id}: {proposal.program_id}",
        "",
        *fields_table(
            [
                ("Cluster", cluster.cluster),
                ("Program", f"`{proposal.program_id}`"),
                ("From sha256", f"`{result['old_hash']}`"),
                (f"To sha256 (archive #{result['archive_id']})", f"`{result['new_hash']}`"),
                ("Buffer", f"`{proposal.buffer}`"),
                ("Transaction", f"`{result['signature'] or 'none: already applied'}`"),
                (
                    "Approvals",
                    f"{len(result['approvals'])} of {proposal.threshold} (emergency policy)",
                ),
                (
                    "Kill switch",
                    f"{'still engaged' if result['kill_switch_engaged'] else 'released'}",
                ),
                ("Backend", result["backend"]),
                ("On-chain proposal", f"`{result['onchain_proposal'] or 'none'}`"),
                ("Reason", proposal.description),
            ]
        ),
    ]
    if at_risk:
        lines += [
            "",
            f"## Forced over {len(at_risk)} migrated accounts",
            "",
            f"Reason: {force_reason}",
            "",
            *(f"- `{a.address}` (layout v{a.to_version})" for a in at_risk[:50]),
        ]
    await acreate_markdown_artifact(
        key=f"rollback-report-{proposal.id}",
        description=f"Emergency rollback of {proposal.program_id}",
        markdown="\n".join(lines),
    )


__all__ = ["choose_target", "emergency_rollback", "migrated_on_chain", "rollback_key"]

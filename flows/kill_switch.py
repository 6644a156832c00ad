"""Runbook: the kill switch (seed 004's "Kill Switch Activation").

``engage``: at once, without a sign-off (pulling it must be quick): record the switch
(every runbook then refuses to write to the program: upgrade, migration, scheduled
writes) and, where the program has one, send its own pause instruction so users'
transactions stop too. Audited.

``release``: only after a sign-off. A ``kill-switch-release`` proposal is recorded and
members sign its approval message in the pause form (the same form and signature review
as an upgrade, under the emergency threshold); then the program is unpaused and the
switch released, audited, in that order.

The release proposal's ``buffer`` field holds the literal ``kill-switch-release`` and its
hash is the program's current verifiable-build hash, so the message a member signs says
what is approved: ``...; program: <id>; buffer: kill-switch-release; sha256: <hash>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from blocks.cluster import SolanaCluster
from blocks.multisig import MultisigPolicy
from flows.upgrade import collect_signoffs
from runbooks import policy as policy_audit
from runbooks.errors import InputError
from runbooks.keys import parse_pubkey
from runbooks.policy import Policy
from store.migration_models import ALL_PROGRAMS
from store.migration_records import RELEASE_KIND, KillSwitchRecord
from tasks import chain, records
from tasks import killswitch as switch
from tasks.notify import notify

RELEASE_BUFFER = "kill-switch-release"


def emergency_policy(policy: Policy, *, timelock: bool = True) -> Policy:
    """The policy under its emergency threshold and timelock (the normal ones when the
    block sets none); without ``timelock``, no wait at all."""
    threshold = policy.emergency_threshold or policy.threshold
    seconds = policy.emergency_timelock_seconds
    if seconds is None:
        seconds = policy.timelock_seconds
    if not 1 <= threshold <= len(policy.members):
        raise InputError(
            f"emergency threshold {threshold} of {len(policy.members)} members is out of range; "
            "fix the multisig policy block"
        )
    return dataclasses.replace(
        policy, threshold=threshold, timelock_seconds=seconds if timelock else 0
    )


@flow(name="kill-switch", persist_result=False)
async def kill_switch(
    action: Literal["engage", "release"],
    program_id: str,
    reason: str,
    actor: str,
    cluster_block: str = "localnet",
    policy_block: str = "localnet-multisig",
    program_pause_block: str | None = None,
    fee_payer_block: str = "localnet-fee-payer",
    slack_block: str | None = None,
) -> dict[str, Any]:
    """Engage the kill switch at once, or release it after the members' sign-off.

    Args:
        action: engage (at once) or release (after sign-off).
        program_id: The program (base58 address), or * for every program.
        reason: Why; recorded and announced.
        actor: The on-call engineer (name or key).
        cluster_block: The SolanaCluster block of the cluster the program is on.
        policy_block: The MultisigPolicy block whose members sign off the release.
        program_pause_block: The ProgramPause block of the program's own pause; empty
            engages only the records' switch, and the program keeps serving.
        fee_payer_block: The SolanaKeypair block that pays for the program's pause.
        slack_block: The SlackChannel block to notify; empty logs the messages instead.
    """
    if program_id != ALL_PROGRAMS:
        parse_pubkey(program_id, "program id")
    cluster = await SolanaCluster.aload(cluster_block)
    if action == "engage":
        record = await engage(
            cluster, program_id, reason, actor, program_pause_block, fee_payer_block, slack_block
        )
        return _state(record, program_pause_block)
    policy_config = await MultisigPolicy.aload(policy_block)
    released = await release_with_signoff(
        cluster,
        program_id,
        policy_config.policy(policy_block),
        policy_config.signoff_timeout_seconds,
        reason=reason,
        actor=actor,
        program_pause_block=program_pause_block,
        fee_payer_block=fee_payer_block,
        slack_block=slack_block,
    )
    return _state(released, program_pause_block)


async def engage(
    cluster: SolanaCluster,
    program_id: str,
    reason: str,
    actor: str,
    program_pause_block: str | None,
    fee_payer_block: str,
    slack_block: str | None,
) -> KillSwitchRecord:
    """Record the switch first (runbooks stop at once), then pause the program."""
    record = switch.engage_kill_switch(cluster.cluster, program_id, reason, actor)
    if program_pause_block:
        await switch.set_program_paused(cluster, program_pause_block, True, fee_payer_block)
    await notify(
        f":rotating_light: KILL SWITCH ENGAGED for {record.scope} by {record.actor}: "
        f"{record.reason}. No runbook writes to it until a signed-off release.",
        slack_block=slack_block,
    )
    return record


async def release_with_signoff(
    cluster: SolanaCluster,
    program_id: str,
    policy: Policy,
    signoff_timeout_seconds: int,
    *,
    reason: str,
    actor: str,
    program_pause_block: str | None,
    fee_payer_block: str,
    slack_block: str | None,
) -> KillSwitchRecord | None:
    """Collect the release sign-off (emergency threshold, no timelock), then unpause the
    program and release the switch. None when the members rejected or cancelled (the
    switch stays engaged)."""
    logger = get_run_logger()
    engaged = [s for s in switch.engaged(cluster.cluster, program_id) if s.program_id == program_id]
    if not engaged:
        raise InputError(
            f"the kill switch of {program_id} on {cluster.cluster} is not engaged; nothing to "
            "release"
        )
    policy_audit.audit(policy, reason)
    signers = emergency_policy(policy, timelock=False)
    current_hash = None
    if program_id != ALL_PROGRAMS:
        current_hash = (await chain.read_program(cluster, program_id)).sha256
    key = release_key(cluster.cluster, program_id)
    proposal = records.proposal_by_key(key)
    if proposal is None:
        proposal = records.record_proposal(
            key=key,
            kind=RELEASE_KIND,
            cluster=cluster.cluster,
            backend=policy.backend,
            governance=policy.name,
            program_id=program_id,
            buffer=RELEASE_BUFFER,
            buffer_hash=current_hash,
            description=f"Release the kill switch of {program_id}: {reason}",
            proposer=actor,
            members=list(signers.members),
            threshold=signers.threshold,
            timelock_seconds=0,
        )
        await notify(
            f"Kill-switch release proposed for {program_id} (proposal #{proposal.id}): "
            f"{signers.threshold} of {len(signers.members)} members must sign. {reason}",
            slack_block=slack_block,
        )
    outcome = await collect_signoffs(
        proposal, signers, signoff_timeout_seconds, cluster, slack_block
    )
    if outcome.closed is not None:
        records.set_proposal_status(proposal.id, outcome.closed, reason=outcome.reason)
        logger.warning("kill switch stays engaged: release %s (%s)", outcome.closed, outcome.reason)
        return None
    records.mark_threshold_met(proposal.id)
    if program_pause_block:
        await switch.set_program_paused(cluster, program_pause_block, False, fee_payer_block)
    record = switch.release_kill_switch(cluster.cluster, program_id, proposal.id, actor)
    await notify(
        f"Kill switch released for {record.scope} (proposal #{proposal.id}, signed by "
        f"{', '.join(outcome.approved_by)}).",
        slack_block=slack_block,
    )
    return record


def release_key(cluster: str, program_id: str) -> str:
    """One release proposal per flow run and switch (a restarted run finds it again)."""
    run_id = flow_run.get_id()
    raw = f"{RELEASE_KIND}|{cluster}|{program_id}|{run_id or 'no-run'}"
    return "release-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def _state(record: KillSwitchRecord | None, program_pause_block: str | None) -> dict[str, Any]:
    if record is None:
        return {"engaged": True, "released": False, "note": "release rejected or cancelled"}
    return {
        "engaged": record.engaged,
        "scope": record.scope,
        "reason": record.reason,
        "actor": record.actor,
        "changed_at": record.changed_at.isoformat(),
        "release_proposal_id": record.release_proposal_id,
        "program_pause": program_pause_block,
    }


__all__ = ["emergency_policy", "engage", "kill_switch", "release_with_signoff"]

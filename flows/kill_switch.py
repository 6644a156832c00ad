"""Runbook: the kill switch (seed 004's "Kill Switch Activation").

``engage``: at once, without a sign-off (pulling it must be quick): record the switch
(every runbook then refuses to write to the program: upgrade, migration, scheduled
writes) and, where the program has one, send its own pause instruction so users'
transactions stop too. Without a program pause block the run log and Slack say plainly
that the program is still serving users. Audited.

``release``: only after a sign-off. A ``kill-switch-release`` proposal is recorded and
members sign its own line (``domain.kill_switch.KillSwitchRelease``: cluster, program,
release proposal, the program's current hash) in the pause form, reviewed off-chain under
the emergency threshold whatever the policy's backend (a release writes no program code,
so there is no on-chain proposal); then the program is unpaused and the switch released,
audited, in that order.

Under a Squads policy the engage is the same (it reads no policy), and the release is the
same signed line, but who signs and how many come from the Squads multisig read from chain
at release time: its members with Vote permission and its threshold, after the multisig
passes the Squads audit (``domain.kill_switch.squads_release_policy`` says why). A policy
naming no multisig, or an address that is not a Squads multisig, is refused before anything
is recorded or sent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from prefect import flow, get_run_logger

from blocks import load_block, preload
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.program_pause import ProgramPause
from blocks.slack import SlackChannel
from core.errors import InputError
from core.idempotency import NO_RUN, idempotency_key
from core.keys import parse_pubkey
from domain import messages, signoff
from domain import policy as policy_audit
from domain.forms import titled_form
from domain.kill_switch import (
    KillSwitchRelease,
    release_form_description,
    squads_release_policy,
    still_serving_warning,
)
from domain.policy import Policy
from flows import _signoff as signoffs
from store.models import ALL_PROGRAMS
from store.records.kill_switch import RELEASE_KIND, KillSwitchRecord
from tasks import chain, governance, records, squads_audit
from tasks import kill_switch as switch
from tasks.notify import notify, open_thread
from tasks.records import current_run_id

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
@titled_form
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
        policy_block: The MultisigPolicy block whose members sign off the release (under
            Squads: the voters of its multisig, under the multisig's threshold).
        program_pause_block: The ProgramPause block of the program's own pause; empty
            engages only the records' switch, and the program keeps serving.
        fee_payer_block: The SolanaKeypair block that pays for the program's pause.
        slack_block: The SlackChannel block to notify; empty logs the messages instead.
    """
    if program_id != ALL_PROGRAMS:
        parse_pubkey(program_id, "program id")
    reason = policy_audit.check_description(reason, "reason")
    actor = policy_audit.check_description(actor, "actor")
    cluster = await load_block(SolanaCluster, cluster_block)
    # Every block the action uses loads before anything is recorded or sent.
    await preload(
        ("policy_block", MultisigPolicy, policy_block if action == "release" else None),
        ("fee_payer_block", SolanaKeypair, fee_payer_block if program_pause_block else None),
        ("slack_block", SlackChannel, slack_block or None),
    )
    if program_pause_block:  # bad input is refused before anything is written
        await check_pause_block(program_pause_block, program_id)
    if action == "engage":
        record = await engage(
            cluster, program_id, reason, actor, program_pause_block, fee_payer_block, slack_block
        )
        return _state(record, program_pause_block)
    policy_config = await load_block(MultisigPolicy, policy_block)
    policy = policy_config.policy(policy_block)
    policy_audit.check_backend(policy, "kill switch")
    released = await release_with_signoff(
        cluster,
        program_id,
        policy,
        policy_config.signoff_timeout_seconds,
        reason=reason,
        actor=actor,
        program_pause_block=program_pause_block,
        fee_payer_block=fee_payer_block,
        slack_block=slack_block,
        squads_multisig=policy_config.squads_multisig,
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
    text = (
        f":rotating_light: KILL SWITCH ENGAGED for {record.scope} by {record.actor}: "
        f"{record.reason}. No runbook writes to it until a signed-off release."
    )
    if program_pause_block:
        await switch.set_program_paused(cluster, program_pause_block, True, fee_payer_block)
        text += f" The program's own pause is on (block {program_pause_block}): users stop too."
    else:
        warning = still_serving_warning(program_id)
        get_run_logger().warning("%s", warning)
        text += f" :warning: {warning}"
    await notify(text, slack_block=slack_block)
    return record


async def check_pause_block(name: str, program_id: str) -> ProgramPause:
    """The pause block must pause this program (``*``: any), else nothing is done."""
    block = await load_block(ProgramPause, name)
    if program_id not in (ALL_PROGRAMS, block.program_id):
        raise InputError(
            f"program pause block {name!r} pauses {block.program_id}, not {program_id}: pass "
            f"the pause block of {program_id}, or leave program_pause_block empty"
        )
    return block


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
    squads_multisig: str | None = None,
) -> KillSwitchRecord | None:
    """Collect the release sign-off (emergency threshold, no timelock; under Squads the
    voters and threshold of ``squads_multisig``), then unpause the program and release the
    switch. None when the members rejected or cancelled (the switch stays engaged)."""
    logger = get_run_logger()
    stopping = switch.engaged(cluster.cluster, program_id)
    engaged = [s for s in stopping if s.program_id == program_id]
    if not engaged:
        others = "".join(
            f"; the switch of {s.scope} is engaged: release it with program_id {s.program_id}"
            for s in stopping
        )
        raise InputError(
            f"the kill switch of {program_id} on {cluster.cluster} is not engaged: nothing to "
            f"release, nothing recorded{others}"
        )
    signers = await release_signers(cluster, policy, reason, squads_multisig)
    current_hash = None
    if program_id != ALL_PROGRAMS:
        current_hash = (await chain.read_program(cluster, program_id)).sha256
    key = release_key(cluster.cluster, program_id)
    proposal = records.proposal_by_key(key)
    threshold_source = "emergency threshold"
    who = "members"
    if policy.backend == "squads":
        threshold_source = f"the threshold of Squads multisig {signers.name}"
        who = "voters of the Squads multisig"
    if proposal is None:
        proposal = records.record_proposal(
            key=key,
            kind=RELEASE_KIND,
            cluster=cluster.cluster,
            backend=policy.backend,
            governance=signers.name,
            program_id=program_id,
            buffer=RELEASE_BUFFER,
            buffer_hash=current_hash,  # None for * (the signed line says none)
            description=f"Release the kill switch of {program_id}: {reason}",
            proposer=actor,
            members=list(signers.members),
            threshold=signers.threshold,
            timelock_seconds=0,
            genesis_hash=await governance.cluster_genesis(cluster),
        )
        text = (
            f"Kill-switch release proposed for {program_id} (proposal #{proposal.id}): "
            f"{signers.threshold} of {len(signers.members)} {who} must sign this line: "
            f"{KillSwitchRelease.for_proposal(proposal).message('approve')}  Reason: {reason}"
        )
        # The release's own thread: sign-off progress replies there and updates it.
        await open_thread(proposal.id, text, [messages.section(text)], slack_block)
    subject = KillSwitchRelease.for_proposal(proposal)
    message = subject.message("approve")

    def describe(approved_by: list[str]) -> str:
        return release_form_description(
            subject=subject,
            switch=engaged[0],
            reason=reason,
            requested_by=actor,
            program_pause_block=program_pause_block,
            threshold=signers.threshold,
            members=signers.members,
            approved_by=approved_by,
            signing_section=signoff.signing_section(
                members=signers.members,
                approved_by=approved_by,
                message=message,
                sign_command="runbooks sign --keypair ~/.config/solana/id.json "
                f'--message "{message}"',
            ),
            threshold_source=threshold_source,
        )

    outcome = await signoffs.collect_signoffs(
        proposal,
        signers,
        subject,
        threshold=signers.threshold,
        timeout_seconds=signoff_timeout_seconds,
        describe=describe,
        slack_block=slack_block,
        runbook="kill-switch release",
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
        f"{', '.join(signers.label(m) for m in outcome.approved_by)}).",
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    return record


async def release_signers(
    cluster: SolanaCluster, policy: Policy, reason: str, squads_multisig: str | None
) -> Policy:
    """Who signs the release and how many must: the policy's members under its emergency
    threshold; under Squads the multisig's voters under its threshold, read from chain
    once it passes the Squads audit. Refused (nothing recorded) when the policy fails."""
    if policy.backend != "squads":
        policy_audit.audit(policy, reason, "reason")
        return emergency_policy(policy, timelock=False)
    policy_audit.check_description(reason, "reason")
    audited = await squads_audit.audit_squads_multisig(cluster, policy, squads_multisig)
    assert audited.multisig is not None  # the audit returns the account it judged
    return squads_release_policy(policy, audited.multisig, audited.address)


def release_key(cluster: str, program_id: str) -> str:
    """One release proposal per flow run and switch (a restarted run finds it again)."""
    run_id = current_run_id()
    return idempotency_key(RELEASE_KIND, cluster, program_id, run_id or NO_RUN, prefix="release")


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


__all__ = ["check_pause_block", "emergency_policy", "engage", "kill_switch", "release_with_signoff"]

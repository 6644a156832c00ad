"""Runbooks: key rotation, its monthly review, and the key registry.

Rotate a program's upgrade authority (seed 001's authority transfer):

1. Check the request: the new authority's keypair block must hold the new key
   (SetAuthorityChecked makes the new authority sign, so a typo cannot hand a program to
   a key nobody holds); making a program immutable needs ``confirm_program_id`` typed
   exactly and a full sign-off (every member), since it cannot be undone.
2. Audit the multisig policy; read the program: its authority must be this runbook's key.
3. Record the proposal; members sign its message (which names the new authority) in the
   pause form; wait out the timelock.
4. Send SetAuthorityChecked (or SetAuthority to none), verify on chain (new authority,
   unchanged code), record the rotation, retire the old key in the registry, register
   the new one, point the managed-programs block at it, report.

With the onchain backend the governance's authority PDA is the current authority:
moving it away (to a key, or to another governance's PDA) is an upgrade_manager
set-authority proposal, signed off and relayed like an upgrade's, executed by the
program after the timelock. upgrade_manager cannot make a program immutable (its
set-authority always names a new authority), so that is refused. Moving a program *to*
the governance is the checked adopt (``adopt=true``): the program's current key hands it
over and upgrade_manager signs for its own PDA, so a typo cannot strand the program.

With the squads backend the multisig's vault is the current authority: the rotation is
a Squads vault transaction holding SetAuthorityChecked, approved by the members in
Squads, executed by the runbook's key with the new authority co-signing
(``rotate_under_squads``).

Review (monthly): every registered key with its due date — program upgrade keys every
6 months, governance every 12, emergency every 3 — and a Slack reminder for keys due
within ``remind_days`` or overdue.

Register: add a key to the registry (or record an out-of-band rotation with
``replaces``), e.g. governance and emergency keys rotated by their own procedures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled
from pydantic import Field

from blocks import load_block, preload
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.programs import ManagedPrograms
from blocks.slack import SlackChannel
from core.approval import ApprovalSubject
from core.errors import (
    AuthorityMismatch,
    InputError,
    ProgramImmutable,
    ProposalClosed,
)
from core.idempotency import NO_RUN, idempotency_key
from core.keys import parse_pubkey
from domain import key_rotation, messages, signoff
from domain import policy as policy_audit
from domain.forms import titled_form
from domain.key_rotation import IMMUTABLE, AuthorityChangeSubject
from domain.policy import Policy
from domain.report import fields_table
from flows import _signoff as signoffs
from flows import _squads as squads_steps
from flows._signoff import SignOffOutcome
from flows.upgrade import onchain_hooks, wait_out_timelock
from store.records import key_rotation as key_rotation_records
from store.records.proposals import ProposalRecord, proposal_subject
from tasks import chain, governance, records, squads_audit
from tasks import key_rotation as key_tasks
from tasks import squads as squads_tasks
from tasks.notify import notify, open_thread
from tasks.records import current_run_id, records_engine


def rotation_key(
    cluster: str, program_id: str, new_authority: str | None, run_id: str | None
) -> str:
    """Identifies the proposal of one run, so a restarted run finds it again."""
    return idempotency_key(
        "set-authority",
        cluster,
        program_id,
        new_authority or IMMUTABLE,
        run_id or NO_RUN,
        prefix="authority",
    )


def change_subject(proposal: ProposalRecord, new_authority: str | None) -> AuthorityChangeSubject:
    return AuthorityChangeSubject(
        governance=proposal.governance,
        proposal=str(proposal.id),
        program=proposal.program_id,
        buffer="",
        sha256=proposal.buffer_hash or "",
        new_authority=new_authority or IMMUTABLE,
        cluster=proposal.genesis_hash or "",  # none recorded: the line refuses to form
    )


@flow(name="key-rotation", persist_result=False)
@titled_form
async def rotate_upgrade_authority(
    program_id: str,
    reason: str,
    proposer: str,
    new_authority: str | None = None,
    new_authority_block: str | None = None,
    new_governance: str | None = None,
    adopt: bool = False,
    make_immutable: bool = False,
    confirm_program_id: str | None = None,
    cluster_block: str = "localnet",
    policy_block: str = "localnet-multisig",
    authority_block: str = "localnet-upgrade-authority",
    fee_payer_block: str = "localnet-fee-payer",
    programs_block: str | None = "managed-programs",
    slack_block: str | None = None,
) -> Any:
    """Move a program's upgrade authority after sign-off (SetAuthorityChecked).

    Args:
        program_id: The program whose upgrade authority moves (base58 address).
        reason: Why the authority moves; members read it, and it is recorded.
        proposer: Who proposes: your name or key.
        new_authority: The new upgrade authority's public key (base58).
        new_authority_block: The SolanaKeypair block holding the new authority's key:
            SetAuthorityChecked needs its signature (onchain backend: it proves the key
            is held; the governance's PDA signs).
        new_governance: Onchain backend: hand the program to this other upgrade_manager
            governance (its authority PDA), in place of new_authority.
        adopt: Onchain backend: hand the program to this policy's governance; its
            current upgrade authority (authority_block) hands it over, checked.
        make_immutable: Remove the upgrade authority forever. Needs the program id typed
            again below and every member's sign-off.
        confirm_program_id: To make the program immutable, type its program id again.
        cluster_block: The SolanaCluster block of the cluster the program is on.
        policy_block: The MultisigPolicy block: members, threshold, timelock, backend.
        authority_block: The SolanaKeypair block of the current upgrade authority
            (keypair backend, or the key a program is adopted from).
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        programs_block: The ManagedPrograms block to update with the new authority; empty
            updates none.
        slack_block: The SlackChannel block to notify; empty logs the messages instead.
    """
    logger = get_run_logger()
    parse_pubkey(program_id, "program id")

    # 1. The request itself, before anything is read or recorded.
    if sum(map(bool, (new_authority, new_governance, adopt, make_immutable))) > 1:
        raise InputError(
            "give one of new_authority, new_governance, adopt or make_immutable: each moves "
            "the authority somewhere else"
        )
    target: str | None = None
    if make_immutable:
        if new_authority or new_authority_block:
            raise InputError("make_immutable removes the authority: give no new authority")
        key_rotation.check_immutable_confirmation(program_id, confirm_program_id)
    elif new_governance or adopt:
        pass  # the target is a governance's PDA, read from the chain below
    else:
        if not new_authority:
            raise InputError("give new_authority (or make_immutable with its confirmation)")
        target = str(parse_pubkey(new_authority, "new authority"))
        await _check_new_authority_signs(target, new_authority_block)

    # 2. Policy and chain.
    cluster = await load_block(SolanaCluster, cluster_block)
    policy_config = await load_block(MultisigPolicy, policy_block)
    policy = policy_config.policy(policy_block)
    policy_audit.check_backend(policy, "key rotation")
    if policy.backend == "squads":
        # The multisig's members, threshold and time lock are audited as read from chain.
        reason = policy_audit.check_description(reason, "reason")
        proposer = policy_audit.check_description(proposer, "proposer")
        if make_immutable or new_governance or adopt or target is None:
            raise InputError(
                "the Squads backend moves the authority from the vault to a new key "
                "(new_authority with new_authority_block) only; make_immutable, "
                "new_governance and adopt are refused: nothing was recorded or sent"
            )
        assert new_authority_block is not None  # checked with the new authority above
        return await rotate_under_squads(
            cluster,
            policy,
            policy_config,
            program_id=program_id,
            target=target,
            new_authority_block=new_authority_block,
            reason=reason,
            proposer=proposer,
            fee_payer_block=fee_payer_block,
            programs_block=programs_block,
            slack_block=slack_block,
        )
    policy_audit.audit(policy, reason, "reason")
    proposer = policy_audit.check_description(proposer, "proposer")
    # Every block the run uses loads before anything is recorded or sent.
    await preload(
        (
            "authority_block",
            SolanaKeypair,
            authority_block if policy.backend != "onchain" or adopt else None,
        ),
        ("fee_payer_block", SolanaKeypair, fee_payer_block),
        ("slack_block", SlackChannel, slack_block or None),
    )
    onchain = None
    if policy.backend == "onchain":
        if make_immutable:
            raise InputError(
                "upgrade_manager cannot make a program immutable: its execute_set_authority "
                "always names a new authority, and the loader removes an authority only when "
                "none is named. Move the program to a key (new_authority) and make it "
                "immutable from there with the keypair backend"
            )
        onchain = await governance.load_governance(
            cluster,
            policy,
            policy_config.governance,
            policy_config.governance_program,
            fee_payer_block,
        )
        if adopt:
            return await adopt_into_governance(
                cluster,
                onchain,
                program_id,
                reason,
                proposer,
                authority_block,
                programs_block,
                slack_block,
            )
        if new_governance:
            target = await governance_authority(
                cluster, onchain, new_governance, policy_config.governance_program
            )
        current = onchain.authority
    else:
        if new_governance or adopt:
            raise InputError(
                f"new_governance and adopt need a multisig policy with the onchain backend; "
                f"{policy_block!r} uses {policy.backend}"
            )
        current = str((await load_block(SolanaKeypair, authority_block)).keypair().pubkey())
    if target == current:
        raise InputError(f"{target} is already the upgrade authority this runbook holds")
    threshold = len(policy.members) if make_immutable else policy.threshold

    # 3. Proposal and sign-offs (once per run; a restart finds them in the records).
    key = rotation_key(cluster.cluster, program_id, target, current_run_id())
    proposal = records.proposal_by_key(key)
    if proposal is None:
        info = await chain.read_program(cluster, program_id)
        if info.authority is None:
            raise ProgramImmutable(f"{program_id} is immutable already: it has no authority")
        if info.authority != current:
            if onchain is not None:
                raise AuthorityMismatch(
                    f"{program_id}'s upgrade authority is {info.authority}, not governance "
                    f"{onchain.governance}'s authority {current}: the governance does not "
                    "manage it. To hand it to the governance, run this with adopt=true and "
                    "authority_block holding its current key (the checked adopt)"
                )
            raise AuthorityMismatch(
                f"{program_id}'s upgrade authority is {info.authority}, not the key of block "
                f"{authority_block!r} ({current}); use the block that holds it"
            )
        # The cluster the signed line names (on chain: the governance's own cluster).
        genesis = await governance.cluster_genesis(cluster, onchain)
        proposal = records.record_proposal(
            key=key,
            kind="make-immutable" if make_immutable else "set-authority",
            cluster=cluster.cluster,
            backend=policy.backend,
            governance=onchain.governance if onchain is not None else current,
            program_id=program_id,
            buffer_hash=info.sha256,
            description=f"{reason} (new upgrade authority: {target or 'none, immutable'})",
            proposer=proposer,
            members=list(policy.members),
            threshold=threshold,
            timelock_seconds=policy.timelock_seconds,
            genesis_hash=genesis,
        )
        records.audit(
            "key_rotation.proposed",
            proposal_subject(proposal.id),
            {"old_authority": current, "new_authority": target, "make_immutable": make_immutable},
            actor=proposer,
        )
        proposal, subject = await signing_subject(cluster, onchain, proposal, target)
        await open_thread(
            proposal.id,
            *messages.authority_change_proposed(
                proposal_id=proposal.id,
                program=program_id,
                current=current,
                new_authority=target,
                threshold=threshold,
                members=len(policy.members),
                approval_message=subject.message("approve"),
                run_url=flow_run.ui_url,
            ),
            slack_block,
        )
    else:
        proposal, subject = await signing_subject(cluster, onchain, proposal, target)
    outcome = await collect_signoffs(
        proposal,
        target,
        policy,
        threshold,
        slack_block,
        policy_config.signoff_timeout_seconds,
        subject=subject,
        hooks=onchain_hooks(cluster, onchain, proposal),
    )
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
    ends = proposal.timelock_ends_at
    await notify(
        *messages.timelock_started(
            proposal_id=proposal.id, executes_after=ends.isoformat() if ends else "?"
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    veto = await wait_out_timelock(
        proposal,
        policy,
        cluster,
        slack_block,
        onchain,
        subject=subject,
        kind="authority change",
    )
    if veto.closed is not None:
        records.set_proposal_status(proposal.id, veto.closed, reason=veto.reason)
        return Cancelled(message=f"proposal #{proposal.id} cancelled: {veto.reason}")

    # 4. Execute, verify, record. The kill switch does not stop this: moving the authority
    # away from a compromised key is what an incident needs, and it is signed off.
    if onchain is not None:
        assert target is not None  # refused above: upgrade_manager names a new authority
        signature = await governance.execute_set_authority(cluster, onchain, proposal, target)
    else:
        signature = await key_tasks.send_authority_change(
            cluster, program_id, target, authority_block, new_authority_block, fee_payer_block
        )
    after = await key_tasks.verify_authority(cluster, program_id, target, proposal.buffer_hash)
    key_tasks.record_rotation(
        cluster=cluster.cluster,
        program_id=program_id,
        old_authority=current,
        new_authority=target,
        proposal_id=proposal.id,
        signature=signature,
    )
    records.set_proposal_status(proposal.id, "executed")
    updated_block = await _point_block_at(programs_block, program_id, target)
    done = "is now IMMUTABLE" if target is None else f"upgrade authority moved to {target}"
    await notify(
        *messages.executed(
            proposal_id=proposal.id,
            program=program_id,
            signature=signature,
            new_hash=after.sha256,
            outcome=done,
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    result = {
        "backend": policy.backend,
        "onchain_proposal": proposal.onchain_address,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_authority": current,
        "new_authority": target,
        "signature": signature,
        "approvals": outcome.approved_by,
        "programs_block_updated": updated_block,
    }
    await acreate_markdown_artifact(
        key=f"key-rotation-{proposal.id}",
        description=f"Upgrade authority of {program_id}",
        markdown="\n".join(
            [
                f"# Authority proposal #{proposal.id}: executed",
                "",
                *fields_table(
                    [
                        ("Program", f"`{program_id}`"),
                        ("Old authority", f"`{current}`"),
                        ("New authority", f"`{target or 'none (immutable)'}`"),
                        ("Transaction", f"`{signature or 'none: already applied'}`"),
                        ("Code sha256 (unchanged)", f"`{after.sha256}`"),
                        ("Reason", reason),
                        ("Proposer", proposer),
                    ]
                ),
                "",
                f"## Approvals ({len(outcome.approved_by)} of {threshold})",
                *(f"- `{m}`" for m in outcome.approved_by),
            ]
        ),
    )
    logger.info("%s: %s", program_id, done)
    return result


async def rotate_under_squads(
    cluster: SolanaCluster,
    policy: Policy,
    policy_config: MultisigPolicy,
    *,
    program_id: str,
    target: str,
    new_authority_block: str,
    reason: str,
    proposer: str,
    fee_payer_block: str,
    programs_block: str | None,
    slack_block: str | None,
) -> dict[str, Any]:
    """The key rotation when a Squads v4 multisig's vault holds the upgrade authority: a
    vault transaction holding SetAuthorityChecked and its proposal; members approve in
    Squads; after the multisig's time lock the runbook executes it, the new authority
    co-signing the execute transaction (the extra signer SetAuthorityChecked needs)."""
    await preload(
        ("fee_payer_block", SolanaKeypair, fee_payer_block),
        ("slack_block", SlackChannel, slack_block or None),
    )
    runbook_key = str((await load_block(SolanaKeypair, fee_payer_block)).keypair().pubkey())
    multisig_address = policy_config.squads_multisig
    await squads_audit.audit_squads_multisig(cluster, policy, multisig_address, runbook_key)
    vault = str(squads_tasks.vault_of(multisig_address))
    if target == vault:
        raise InputError(f"{target} is already the upgrade authority: the Squads vault")

    key = rotation_key(cluster.cluster, program_id, target, current_run_id())
    proposal = records.proposal_by_key(key)
    if proposal is None:
        info = await chain.read_program(cluster, program_id)
        if info.authority is None:
            raise ProgramImmutable(f"{program_id} is immutable already: it has no authority")
        if info.authority != vault:
            raise AuthorityMismatch(
                f"{program_id}'s upgrade authority is {info.authority}, not the Squads vault "
                f"{vault} of multisig {multisig_address}: nothing was recorded or sent"
            )
        multisig = await squads_audit.read_squads_multisig(cluster, multisig_address)
        proposal = records.record_proposal(
            key=key,
            kind="set-authority",
            cluster=cluster.cluster,
            backend="squads",
            governance=multisig_address,
            program_id=program_id,
            buffer_hash=info.sha256,
            description=f"{reason} (new upgrade authority: {target})",
            proposer=proposer,
            **squads_steps.voters_of(multisig),
            genesis_hash=await governance.cluster_genesis(cluster, None),
        )
        records.audit(
            "key_rotation.proposed",
            proposal_subject(proposal.id),
            {"old_authority": vault, "new_authority": target, "make_immutable": False},
            actor=proposer,
        )
    created = await squads_tasks.create_set_authority_proposal(
        cluster, proposal, multisig_address, target, fee_payer_block
    )
    proposal, approved = await squads_steps.announce_and_wait(
        cluster, policy_config, proposal, created, slack_block
    )

    # Not stopped by the kill switch, as the other backends' rotation is not.
    signature = await squads_tasks.send_squads_set_authority(
        cluster, proposal, created, target, new_authority_block, fee_payer_block
    )
    after = await key_tasks.verify_authority(cluster, program_id, target, proposal.buffer_hash)
    key_tasks.record_rotation(
        cluster=cluster.cluster,
        program_id=program_id,
        old_authority=vault,
        new_authority=target,
        proposal_id=proposal.id,
        signature=signature,
    )
    records.set_proposal_status(proposal.id, "executed")
    updated_block = await _point_block_at(programs_block, program_id, target)
    await notify(
        *messages.executed(
            proposal_id=proposal.id,
            program=program_id,
            signature=signature,
            new_hash=after.sha256,
            outcome=f"upgrade authority moved from the Squads vault to {target}",
        ),
        slack_block=slack_block,
        proposal_id=proposal.id,
    )
    return {
        "backend": "squads",
        "onchain_proposal": created.proposal,
        "squads_multisig": multisig_address,
        "transaction_index": created.transaction_index,
        "proposal_id": proposal.id,
        "program_id": program_id,
        "old_authority": vault,
        "new_authority": target,
        "signature": signature,
        "approvals": [str(k) for k in approved.approved],
        "programs_block_updated": updated_block,
    }


async def collect_signoffs(
    proposal: ProposalRecord,
    target: str | None,
    policy: Policy,
    threshold: int,
    slack_block: str | None,
    timeout_seconds: int,
    *,
    subject: ApprovalSubject | None = None,
    hooks: tuple[signoffs.ChainSignoffs | None, signoffs.Relay | None] = (None, None),
) -> SignOffOutcome:
    """One pause per sign-off until ``threshold`` members approve, or they reject/cancel.
    ``subject`` and ``hooks``: an on-chain proposal's line and its relay (onchain backend)."""
    if subject is None:
        subject = change_subject(proposal, target)
    chain_signoffs, relay = hooks
    return await signoffs.collect_signoffs(
        proposal,
        policy,
        subject,
        threshold=threshold,
        timeout_seconds=timeout_seconds,
        describe=lambda approved: form_description(
            proposal, subject, target, policy, threshold, approved
        ),
        slack_block=slack_block,
        runbook="key-rotation",
        chain_signoffs=chain_signoffs,
        relay=relay,
    )


async def signing_subject(
    cluster: SolanaCluster,
    onchain: governance.OnchainGovernance | None,
    proposal: ProposalRecord,
    target: str | None,
) -> tuple[ProposalRecord, ApprovalSubject]:
    """The line members sign: upgrade_manager's own for an on-chain proposal (created here
    once, found again on a restart; the record gains its address), else the runbook's
    authority-change line."""
    if onchain is None:
        return proposal, change_subject(proposal, target)
    assert target is not None
    proposal = await governance.create_set_authority_proposal(cluster, onchain, proposal, target)
    return proposal, await governance.signing_line(cluster, onchain, proposal)


def form_description(
    proposal: ProposalRecord,
    subject: ApprovalSubject,
    target: str | None,
    policy: Policy,
    threshold: int,
    approved: list[str],
) -> str:
    """The markdown a member reads in the pause form before signing."""
    message = subject.message("approve")
    number = (
        f"{subject.proposal} (on chain; records #{proposal.id})"
        if proposal.onchain_address
        else f"#{proposal.id}"
    )
    sign_command = (
        f"runbooks sign --onchain-proposal {proposal.onchain_address} --url <rpc> "
        "--keypair ~/.config/solana/id.json"
        if proposal.onchain_address
        else f'runbooks sign --keypair ~/.config/solana/id.json --message "{message}"'
    )
    change = (
        "**make the program IMMUTABLE** — no upgrade will ever be possible again"
        if target is None
        else f"move the upgrade authority to `{target}`"
    )
    return "\n".join(
        [
            f"## Sign off authority proposal {number}",
            "",
            *fields_table(
                [
                    ("Cluster", proposal.cluster),
                    ("Program", f"`{proposal.program_id}`"),
                    ("Current authority", f"`{proposal.governance}`"),
                    ("Change", change),
                    ("Code sha256", f"`{proposal.buffer_hash}`"),
                    ("Description", proposal.description),
                    ("Proposer", proposal.proposer),
                    ("Approvals", f"{len(approved)} of {threshold} needed"),
                ]
            ),
            "",
            *signoff.signing_section(
                members=policy.members,
                approved_by=approved,
                message=message,
                sign_command=sign_command,
            ),
            "To reject or cancel, sign the same line with `action: reject` / `action: cancel`.",
        ]
    )


@flow(name="key-rotation-review", persist_result=False)
@titled_form
async def key_rotation_review(
    cluster_block: str = "localnet",
    remind_days: Annotated[int, Field(ge=0)] = key_rotation.DEFAULT_REMIND_DAYS,
    slack_block: str | None = None,
) -> dict[str, Any]:
    """Review every registered key's rotation schedule and remind before one is due.

    Args:
        cluster_block: The SolanaCluster block of the cluster whose keys to review.
        remind_days: Remind this many days before a key is due for rotation.
        slack_block: The SlackChannel block to remind; empty logs the messages instead.
    """
    now = datetime.now(UTC)
    cluster = (await load_block(SolanaCluster, cluster_block)).cluster
    engine = records_engine()
    dues = key_rotation.review(key_rotation_records.managed_keys(engine, cluster), now, remind_days)
    rows = [
        {
            "label": d.key.label,
            "pubkey": d.key.pubkey,
            "role": d.key.role,
            "rotated_at": d.key.rotated_at.date().isoformat(),
            "due_at": d.due_at.date().isoformat(),
            "days_left": d.days_left,
            "status": d.status,
        }
        for d in dues
    ]
    await acreate_table_artifact(
        key="key-rotation-review",
        table=rows or [{"label": "no registered keys", "status": ""}],
        description=f"Key rotation schedule on {cluster} (upgrade 6, governance 12, "
        "emergency 3 months)",
    )
    due = [r for r in rows if r["status"] != "ok"]
    if due:
        await notify(
            *messages.rotation_reminder(keys=due, run_url=flow_run.ui_url),
            slack_block=slack_block,
        )
    records.audit(
        "key.review",
        f"keys:{cluster}",
        {"keys": len(rows), "due": [r["pubkey"] for r in due]},
    )
    return {"cluster": cluster, "keys": rows, "due": due}


@flow(name="register-key", persist_result=False)
@titled_form
async def register_key(
    pubkey: str,
    role: Literal["upgrade", "governance", "emergency"],
    label: str,
    programs: list[str] = [],  # noqa: B006 - Prefect parameters are copied per run
    rotated_at: datetime | None = None,
    replaces: str | None = None,
    cluster_block: str = "localnet",
) -> dict[str, Any]:
    """Register a key whose rotation the review tracks (and retire the one it replaces).

    Args:
        pubkey: The key's public key (base58).
        role: What the key is for; it sets the rotation period (upgrade 6, governance 12,
            emergency 3 months).
        label: A name people recognise, e.g. emergency halt key #2.
        programs: The program ids it is the upgrade authority of.
        rotated_at: When it came into service; empty: now.
        replaces: The public key this one replaces; that key is retired (rotated out).
        cluster_block: The SolanaCluster block of the cluster the key is used on.
    """
    cluster = (await load_block(SolanaCluster, cluster_block)).cluster
    key = str(parse_pubkey(pubkey, "public key"))
    if rotated_at is not None and rotated_at.tzinfo is None:
        rotated_at = rotated_at.replace(tzinfo=UTC)
    registered = key_tasks.register_key(
        cluster=cluster,
        pubkey=key,
        role=role,
        label=label,
        programs=programs,
        rotated_at=rotated_at,
    )
    if replaces:
        key_tasks.retire_key(cluster=cluster, pubkey=replaces, reason=f"replaced by {key}")
    due = key_rotation.due_at(registered.role, registered.rotated_at)
    return {"pubkey": key, "role": registered.role, "due_at": due.isoformat()}


async def governance_authority(
    cluster: SolanaCluster,
    onchain: governance.OnchainGovernance,
    other: str,
    program_id: str,
) -> str:
    """The authority PDA of ``other``, an upgrade_manager governance read on chain (a
    typo names no governance and is refused)."""
    address = str(parse_pubkey(other, "new governance"))
    if address == onchain.governance:
        raise InputError(f"{address} is this policy's governance already: nothing to move")
    return await governance.governance_authority(cluster, address, program_id)


async def adopt_into_governance(
    cluster: SolanaCluster,
    onchain: governance.OnchainGovernance,
    program_id: str,
    reason: str,
    proposer: str,
    authority_block: str,
    programs_block: str | None,
    slack_block: str | None,
) -> dict[str, Any]:
    """Hand ``program_id`` from the key in ``authority_block`` to the governance: the
    checked adopt, where upgrade_manager signs for its own PDA as the new authority (a
    typo cannot strand the program). The current key holder may do this alone (it only
    gives up its power), so no sign-off; it is verified on chain and recorded."""
    info = await chain.read_program(cluster, program_id)
    if info.authority == onchain.authority:
        raise InputError(
            f"{program_id} is managed by governance {onchain.governance} already "
            f"(authority {onchain.authority}): nothing to adopt"
        )
    if info.authority is None:
        raise ProgramImmutable(f"{program_id} is immutable: it has no authority to hand over")
    signature = await governance.adopt_program(cluster, onchain, program_id, authority_block)
    after = await key_tasks.verify_authority(cluster, program_id, onchain.authority, info.sha256)
    key_tasks.record_rotation(
        cluster=cluster.cluster,
        program_id=program_id,
        old_authority=info.authority,
        new_authority=onchain.authority,
        proposal_id=None,
        signature=signature,
    )
    records.audit(
        "key_rotation.adopted",
        f"program:{cluster.cluster}:{program_id}",
        {
            "old_authority": info.authority,
            "governance": onchain.governance,
            "new_authority": onchain.authority,
            "reason": reason,
            "signature": signature,
        },
        actor=proposer,
    )
    updated_block = await _point_block_at(programs_block, program_id, onchain.authority)
    await notify(
        f"{program_id} adopted by governance {onchain.governance}: upgrade authority moved "
        f"from {info.authority} to its PDA {onchain.authority} ({reason})",
        slack_block=slack_block,
    )
    return {
        "backend": "onchain",
        "program_id": program_id,
        "old_authority": info.authority,
        "new_authority": onchain.authority,
        "governance": onchain.governance,
        "signature": signature,
        "code_sha256": after.sha256,
        "programs_block_updated": updated_block,
    }


async def _check_new_authority_signs(target: str, block: str | None) -> None:
    if not block:
        raise InputError(
            "SetAuthorityChecked needs the new authority's signature: give "
            "new_authority_block, a keypair block holding the new key"
        )
    holder = str((await load_block(SolanaKeypair, block)).keypair().pubkey())
    if holder != target:
        raise InputError(
            f"keypair block {block!r} holds {holder}, not the new authority {target}: the new "
            "authority must sign the transfer, so the block must hold its key"
        )


async def _point_block_at(block: str | None, program_id: str, target: str | None) -> bool:
    """Make the managed-programs block expect the new authority (the health check reads it)."""
    if not block:
        return False
    try:
        managed = await load_block(ManagedPrograms, block)
    except ValueError:
        return False
    entry = managed.find(program_id)
    if entry is None:
        return False
    entry.expected_authority = target
    await managed.asave(block, overwrite=True)
    return True


__all__ = [
    "collect_signoffs",
    "key_rotation_review",
    "register_key",
    "rotate_upgrade_authority",
    "rotation_key",
]

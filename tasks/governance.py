"""Tasks of the ``onchain`` sign-off backend: the upgrade_manager program holds the upgrade
authority as a PDA and enforces M-of-N, the timelock and execution on chain.

The flow collects each member's signature in its pause form as with the keypair backend,
then relays it in one transaction [Ed25519SigVerify, approve|reject|cancel] paid by the
fee payer; the program decides, and the records keep the chain's verdict. Who has signed
off is read back from the proposal account, the timelock is waited out on the cluster's
Clock, and execute_upgrade makes the program upgrade by CPI.

Every write reads the chain first, so a retried task never proposes or votes twice: the
on-chain proposal number is reserved in the records before it is created, and a relayed
vote already on chain is not sent again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.approval import STANDARD
from core.errors import (
    ApprovalError,
    ChainError,
    InputError,
    ProposalClosed,
    TransactionFailed,
)
from core.keys import parse_pubkey, parse_signature
from domain import governance as gov_rpc
from domain.policy import Policy
from domain.signoff import Verdict
from programs import rpc
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Governance, Proposal
from store import records
from store.records import audit as audit_records
from store.records import proposals
from store.records.proposals import ProposalRecord
from tasks.chain import (
    READ_RETRIES,
    WRITE_RETRIES,
    execution_purpose,
    rpc_client,
    run_purpose,
    send_execution,
    send_write,
)
from tasks.records import current_run_id, records_engine

# The audit row that ties a records proposal to its on-chain number (written before the
# on-chain proposal is created, so a retry reuses the number instead of taking another).
NUMBER_ACTION = "proposal.onchain_number"
# The records kind proposed on chain as an emergency upgrade (emergency threshold, timelock).
EMERGENCY_KIND = "rollback"


@dataclass(frozen=True)
class OnchainGovernance:
    """Where the on-chain sign-off lives, and who pays for relaying it."""

    program_id: str  # upgrade_manager
    governance: str  # the Governance account: named in every signed message
    authority: str  # its PDA, the upgrade authority of the managed programs
    fee_payer_block: str

    @property
    def keys(self) -> tuple[Pubkey, Pubkey]:
        return Pubkey.from_string(self.program_id), Pubkey.from_string(self.governance)


@task(name="load-governance", **READ_RETRIES)
async def load_governance(
    cluster: SolanaCluster,
    policy: Policy,
    governance: str | None,
    program_id: str,
    fee_payer_block: str,
) -> OnchainGovernance:
    """Read the governance and check the multisig block says what the chain enforces."""
    if not governance:
        raise InputError(
            "the multisig block's backend is onchain but it names no governance account; "
            "set its governance field to the upgrade_manager Governance address"
        )
    program_key = parse_pubkey(program_id, "governance program")
    address = parse_pubkey(governance, "governance")
    async with rpc_client(cluster) as client:
        state = await gov_rpc.read_governance(client, address, program_key)
    gov_rpc.check_policy_matches(policy, state, address)
    get_run_logger().info(
        "governance %s: %d of %d, timelock %d s, upgrade authority %s",
        address,
        state.threshold,
        len(state.members),
        state.timelock,
        state.authority,
    )
    return OnchainGovernance(str(program_key), str(address), str(state.authority), fee_payer_block)


@task(name="read-cluster-genesis", **READ_RETRIES)
async def cluster_genesis(
    cluster: SolanaCluster, onchain_gov: OnchainGovernance | None = None
) -> str:
    """The cluster's genesis hash (``getGenesisHash``), which the signed line names. With
    the onchain backend it must be the one the governance was created for: otherwise the
    RPC URL points at another cluster and the proposal is refused before anything is
    written."""
    async with rpc_client(cluster) as client:
        genesis = await rpc.genesis_hash(client)
        if onchain_gov is None:
            return genesis
        program_key, gov_key = onchain_gov.keys
        state = await gov_rpc.read_governance(client, gov_key, program_key)
    if state.cluster != genesis:
        raise ChainError(
            f"cluster block {cluster.cluster!r} answers with genesis hash {genesis}, but "
            f"governance {gov_key} was created for the cluster whose genesis hash is "
            f"{state.cluster}: check the cluster block's RPC URL "
            f"({', '.join(cluster.rpc_urls)}), it points at another cluster, or the multisig "
            "block's governance; nothing was proposed"
        )
    return genesis


def proposal_number(proposal: ProposalRecord) -> str:
    """The proposal number members sign: the on-chain index for the onchain backend
    (what the program rebuilds), else the records id."""
    if proposal.backend != "onchain":
        return str(proposal.id)
    number = _reserved_number(proposal)
    if number is None:
        raise ChainError(
            f"proposal #{proposal.id} has no on-chain proposal yet; resume or restart its "
            "run so it creates one before anyone signs"
        )
    return str(number)


def _reserved_number(proposal: ProposalRecord) -> int | None:
    events = audit_records.audit_events(
        records_engine(), proposals.proposal_subject(proposal.id), action=NUMBER_ACTION, limit=1
    )
    return int(events[-1].details["index"]) if events else None


async def _payer(onchain_gov: OnchainGovernance) -> Keypair:
    return (await load_block(SolanaKeypair, onchain_gov.fee_payer_block)).keypair()


async def _read(
    client: AsyncClient, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> Proposal:
    if not proposal.onchain_address:
        raise ChainError(f"proposal #{proposal.id} has no on-chain proposal recorded")
    state = await gov_rpc.read_proposal(client, Pubkey.from_string(proposal.onchain_address))
    if state is None:
        raise ChainError(
            f"on-chain proposal {proposal.onchain_address} of proposal #{proposal.id} is missing"
        )
    return state


@task(name="create-onchain-proposal", **WRITE_RETRIES)
async def create_proposal(
    cluster: SolanaCluster, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> ProposalRecord:
    """Create the on-chain upgrade proposal of ``proposal`` (once) and record its address."""
    logger = get_run_logger()
    engine = records_engine()
    program_key, gov_key = onchain_gov.keys
    payer = await _payer(onchain_gov)
    async with rpc_client(cluster) as client:
        number = _reserved_number(proposal)
        if number is None:
            state = await gov_rpc.read_governance(client, gov_key, program_key)
            number = state.proposal_count + 1
            address = um.proposal_address(gov_key, number, program_key)
            audit_records.audit(
                engine,
                records.DEFAULT_ACTOR,
                NUMBER_ACTION,
                proposals.proposal_subject(proposal.id),
                {"governance": str(gov_key), "index": number, "address": str(address)},
                current_run_id(),
            )
        address = um.proposal_address(gov_key, number, program_key)
        proposal = proposals.set_onchain_address(
            engine, proposal.id, str(address), flow_run_id=current_run_id()
        )
        existing = await gov_rpc.read_proposal(client, address)
        if existing is None:
            ix = um.propose_upgrade(
                gov_key,
                number,
                Pubkey.from_string(proposal.program_id),
                Pubkey.from_string(proposal.buffer or ""),
                proposal.buffer_hash or "",
                payer.pubkey(),
                emergency=proposal.kind == EMERGENCY_KIND,
                # The buffer's lamports come back to the fee payer that paid for it; the
                # program refuses any other spill at execution.
                spill=payer.pubkey(),
                program_id=program_key,
            )
            try:
                signature = await send_write(
                    client, cluster, f"propose:proposal:{proposal.id}", [ix], payer
                )
            except TransactionFailed as exc:
                code = gov_rpc.program_error(exc, program_key)
                if code == um.UpgradeManagerError.NotAllowedToPropose:
                    raise ChainError(
                        f"governance {gov_key} refused the proposal: the fee payer "
                        f"{payer.pubkey()} ({onchain_gov.fee_payer_block}) is neither a member "
                        "nor the governance's proposer; set it as proposer with a config "
                        "change, or use a member's key as fee payer"
                    ) from None
                if code == um.UpgradeManagerError.InvalidPda:
                    raise ChainError(
                        f"on-chain proposal number {number} of governance {gov_key} was taken "
                        "by another proposer meanwhile; start a new upgrade run"
                    ) from None
                raise
            logger.info("on-chain proposal %d created at %s: %s", number, address, signature)
            existing = await gov_rpc.read_proposal(client, address)
        _check_is_this_proposal(existing, proposal, number)
    return proposal


def _check_is_this_proposal(state: Proposal | None, proposal: ProposalRecord, number: int) -> None:
    """The account at the reserved address must hold this upgrade, not someone else's."""
    emergency = proposal.kind == EMERGENCY_KIND
    kind = um.ProposalKind.EMERGENCY_UPGRADE if emergency else um.ProposalKind.UPGRADE
    if (
        state is None
        or state.index != number
        or state.kind != kind
        or str(state.program) != proposal.program_id
        or str(state.buffer) != proposal.buffer
        or state.buffer_hash.hex() != proposal.buffer_hash
    ):
        raise ChainError(
            f"on-chain proposal {number} ({proposal.onchain_address}) does not hold proposal "
            f"#{proposal.id}'s upgrade; another proposer took that number. Start a new run"
        )


@task(name="read-onchain-signoffs", **READ_RETRIES)
async def onchain_signoffs(
    cluster: SolanaCluster, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> tuple[dict[str, str], str | None]:
    """(member -> decision, closed status) as the chain records them."""
    _, gov_key = onchain_gov.keys
    async with rpc_client(cluster) as client:
        state = await gov_rpc.read_governance(client, gov_key, onchain_gov.keys[0])
        p = await _read(client, onchain_gov, proposal)
    return gov_rpc.decisions(state, p), gov_rpc.closed_status(p)


@task(name="relay-signoff", **WRITE_RETRIES)
async def relay_signoff(
    cluster: SolanaCluster,
    onchain_gov: OnchainGovernance,
    proposal: ProposalRecord,
    verdict: Verdict,
    signature: str,
) -> Verdict:
    """Relay a sign-off the flow accepted; the program's verdict is the one returned."""
    program_key, gov_key = onchain_gov.keys
    payer = await _payer(onchain_gov)
    async with rpc_client(cluster) as client:
        state = await gov_rpc.read_governance(client, gov_key, program_key)
        p = await _read(client, onchain_gov, proposal)
        # A retry after a lost reply finds its vote on chain and sends nothing.
        if verdict.decision == "cancel" and gov_rpc.closed_status(p) == "cancelled":
            return verdict
        if gov_rpc.decisions(state, p).get(verdict.member) == verdict.decision:
            return verdict
        ixs = um.relayed_vote_instructions(
            gov_key,
            Pubkey.from_string(proposal.onchain_address or ""),
            p,
            Pubkey.from_string(verdict.member),
            parse_signature(signature),
            verdict.decision,
            program_key,
            # The envelope the review found the signature in; the program accepts both.
            form=verdict.form or STANDARD,
        )
        try:
            purpose = f"signoff:proposal:{proposal.id}:{verdict.member}:{verdict.decision}"
            tx = await send_write(client, cluster, purpose, ixs, payer)
        except TransactionFailed as exc:
            return Verdict(
                member=verdict.member,
                decision=verdict.decision,
                accepted=False,
                reason=gov_rpc.refusal(exc, program_key),
            )
    get_run_logger().info("%s of %s relayed on chain: %s", verdict.decision, verdict.member, tx)
    return verdict


@task(name="mark-threshold-met-onchain", **READ_RETRIES)
async def mark_threshold_met(
    cluster: SolanaCluster, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> ProposalRecord:
    """Record the threshold as met at the chain's approved_at (the timelock's start)."""
    async with rpc_client(cluster) as client:
        p = await _read(client, onchain_gov, proposal)
    if p.approved_at == 0:
        raise ApprovalError(f"on-chain proposal {p.index} is not approved on chain yet")
    return proposals.mark_threshold_met(
        records_engine(),
        proposal.id,
        at=datetime.fromtimestamp(p.approved_at, UTC),
        flow_run_id=current_run_id(),
    )


async def _wait_until_executable(
    client: AsyncClient, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> Proposal:
    """The on-chain proposal once its timelock has run out on the chain's clock (which
    the program checks, and which may lag the wall clock); refused when it is closed or
    not approved."""
    program_key, gov_key = onchain_gov.keys
    state = await gov_rpc.read_governance(client, gov_key, program_key)
    p = await _read(client, onchain_gov, proposal)
    closed = gov_rpc.closed_status(p)
    if closed is not None:
        raise ProposalClosed(f"on-chain proposal {p.index} is {closed}; it cannot execute")
    executable_at = p.executable_at(state)
    if executable_at is None:
        raise ApprovalError(f"on-chain proposal {p.index} is not approved on chain")
    while (left := executable_at - await gov_rpc.chain_time(client)) > 0:
        get_run_logger().info("on-chain timelock: %d s left", left)
        await asyncio.sleep(min(left, 30))
    return p


@task(name="execute-onchain-upgrade", **WRITE_RETRIES)
async def execute_upgrade(
    cluster: SolanaCluster,
    onchain_gov: OnchainGovernance,
    proposal: ProposalRecord,
) -> str | None:
    """Have upgrade_manager upgrade the program once the chain's timelock has run out;
    None when the program already holds the proposal's hash (a retry, or done before)."""
    logger = get_run_logger()
    program_key, gov_key = onchain_gov.keys
    payer = await _payer(onchain_gov)
    target = Pubkey.from_string(proposal.program_id)
    buffer = Pubkey.from_string(proposal.buffer or "")
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, target)
        if program.sha256 == proposal.buffer_hash:
            logger.info("program %s already holds sha256 %s: nothing sent", target, program.sha256)
            return None
        p = await _wait_until_executable(client, onchain_gov, proposal)
        ix = um.execute_upgrade(
            gov_key,
            Pubkey.from_string(proposal.onchain_address or ""),
            target,
            buffer,
            p.spill,  # fixed at proposal; the program refuses any other
            program_key,
        )
        try:
            signature = await send_execution(
                client, cluster, proposal.id, [ix], payer, before=program
            )
        except TransactionFailed as exc:
            code = gov_rpc.program_error(exc, program_key)
            if code is None:
                raise
            raise TransactionFailed(
                f"upgrade_manager refused execute_upgrade: {code.name} ({code.value})", exc.logs
            ) from None
    logger.info("upgrade of %s executed by upgrade_manager: %s", target, signature)
    return str(signature)


# --- Reading the governance and a proposal's signed line; authority changes -------------


@task(name="read-governance-state", **READ_RETRIES)
async def governance_state(cluster: SolanaCluster, onchain_gov: OnchainGovernance) -> Governance:
    """The governance account as the chain holds it (members, thresholds, timelocks)."""
    program_key, gov_key = onchain_gov.keys
    async with rpc_client(cluster) as client:
        return await gov_rpc.read_governance(client, gov_key, program_key)


@task(name="read-onchain-signing-line", **READ_RETRIES)
async def signing_line(
    cluster: SolanaCluster, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> gov_rpc.ChainLine:
    """The lines members sign for ``proposal``'s on-chain proposal, as the program rebuilds
    them (any kind: emergency upgrade, set-authority)."""
    async with rpc_client(cluster) as client:
        p = await _read(client, onchain_gov, proposal)
    return gov_rpc.chain_line(onchain_gov.keys[1], p)


async def _reserve_number(
    client: AsyncClient, onchain_gov: OnchainGovernance, proposal: ProposalRecord
) -> tuple[int, Pubkey, ProposalRecord]:
    """The on-chain number of ``proposal`` (reserved in the records once, before anything
    is sent), its address, and the record with that address set."""
    program_key, gov_key = onchain_gov.keys
    engine = records_engine()
    number = _reserved_number(proposal)
    if number is None:
        state = await gov_rpc.read_governance(client, gov_key, program_key)
        number = state.proposal_count + 1
        audit_records.audit(
            engine,
            records.DEFAULT_ACTOR,
            NUMBER_ACTION,
            proposals.proposal_subject(proposal.id),
            {
                "governance": str(gov_key),
                "index": number,
                "address": str(um.proposal_address(gov_key, number, program_key)),
            },
            current_run_id(),
        )
    address = um.proposal_address(gov_key, number, program_key)
    proposal = proposals.set_onchain_address(
        engine, proposal.id, str(address), flow_run_id=current_run_id()
    )
    return number, address, proposal


@task(name="create-onchain-set-authority", **WRITE_RETRIES)
async def create_set_authority_proposal(
    cluster: SolanaCluster,
    onchain_gov: OnchainGovernance,
    proposal: ProposalRecord,
    new_authority: str,
) -> ProposalRecord:
    """Create the on-chain proposal (once) to hand ``proposal``'s program from the
    governance to ``new_authority``, and record its address."""
    program_key, gov_key = onchain_gov.keys
    payer = await _payer(onchain_gov)
    target = Pubkey.from_string(proposal.program_id)
    new_key = Pubkey.from_string(new_authority)
    async with rpc_client(cluster) as client:
        number, address, proposal = await _reserve_number(client, onchain_gov, proposal)
        existing = await gov_rpc.read_proposal(client, address)
        if existing is None:
            ix = um.propose_set_authority(
                gov_key, number, target, new_key, payer.pubkey(), program_key
            )
            try:
                signature = await send_write(
                    client, cluster, f"propose:proposal:{proposal.id}", [ix], payer
                )
            except TransactionFailed as exc:
                code = gov_rpc.program_error(exc, program_key)
                if code == um.UpgradeManagerError.InvalidPda:
                    raise ChainError(
                        f"on-chain proposal number {number} of governance {gov_key} was taken "
                        "by another proposer meanwhile; start a new key-rotation run"
                    ) from None
                if code is None:
                    raise
                raise TransactionFailed(
                    f"upgrade_manager refused propose_set_authority: {code.name} ({code.value})",
                    exc.logs,
                ) from None
            get_run_logger().info(
                "on-chain set-authority proposal %d created at %s: %s", number, address, signature
            )
            existing = await gov_rpc.read_proposal(client, address)
    if (
        existing is None
        or existing.index != number
        or existing.kind != um.ProposalKind.SET_AUTHORITY
        or existing.program != target
        or existing.new_authority != new_key
    ):
        raise ChainError(
            f"on-chain proposal {number} ({address}) does not hold proposal #{proposal.id}'s "
            "authority change; another proposer took that number. Start a new run"
        )
    return proposal


@task(name="execute-onchain-set-authority", **WRITE_RETRIES)
async def execute_set_authority(
    cluster: SolanaCluster,
    onchain_gov: OnchainGovernance,
    proposal: ProposalRecord,
    new_authority: str,
) -> str | None:
    """Have upgrade_manager hand the program to ``new_authority`` once the chain's timelock
    has run out; None when the program already has that authority (a retry)."""
    logger = get_run_logger()
    program_key, gov_key = onchain_gov.keys
    payer = await _payer(onchain_gov)
    target = Pubkey.from_string(proposal.program_id)
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, target)
        if program.authority == new_authority:
            logger.info("%s already has upgrade authority %s: nothing sent", target, new_authority)
            return None
        await _wait_until_executable(client, onchain_gov, proposal)
        ix = um.execute_set_authority(
            gov_key,
            Pubkey.from_string(proposal.onchain_address or ""),
            target,
            Pubkey.from_string(new_authority),
            program_key,
        )
        try:
            signature = await send_write(
                client, cluster, execution_purpose(proposal.id), [ix], payer
            )
        except TransactionFailed as exc:
            code = gov_rpc.program_error(exc, program_key)
            if code is None:
                raise
            raise TransactionFailed(
                f"upgrade_manager refused execute_set_authority: {code.name} ({code.value})",
                exc.logs,
            ) from None
    logger.info("upgrade authority of %s handed to %s: %s", target, new_authority, signature)
    return str(signature)


@task(name="read-governance-authority", **READ_RETRIES)
async def governance_authority(cluster: SolanaCluster, governance: str, program_id: str) -> str:
    """The authority PDA of the governance at ``governance`` (read and checked on chain)."""
    async with rpc_client(cluster) as client:
        state = await gov_rpc.read_governance(
            client,
            parse_pubkey(governance, "governance"),
            parse_pubkey(program_id, "governance program"),
        )
    return str(state.authority)


@task(name="adopt-program", **WRITE_RETRIES)
async def adopt_program(
    cluster: SolanaCluster,
    onchain_gov: OnchainGovernance,
    program_id: str,
    authority_block: str,
) -> str | None:
    """Hand ``program_id`` to the governance with upgrade_manager's checked adopt: the
    current upgrade authority (``authority_block``'s keypair) signs, and the program
    signs for the governance's authority PDA as the new authority, so the program can
    only go to a real governance (a mistyped address fails and changes nothing).

    The transaction signature; None when the PDA already is the program's authority (a
    retry, or adopted before).
    """
    program_key, gov_key = onchain_gov.keys
    target = parse_pubkey(program_id, "program id")
    current = (await load_block(SolanaKeypair, authority_block)).keypair()
    payer = await _payer(onchain_gov)
    async with rpc_client(cluster) as client:
        # Reading the governance first: an address that is not one is refused here.
        state = await gov_rpc.read_governance(client, gov_key, program_key)
        program = await rpc.read_program(client, target)
        if program.authority == str(state.authority):
            get_run_logger().info("%s is already managed by governance %s", target, gov_key)
            return None
        if program.authority != str(current.pubkey()):
            raise InputError(
                f"{target}'s upgrade authority is {program.authority or 'none (immutable)'}, "
                f"not {current.pubkey()} (block {authority_block!r}): only the current "
                "authority can hand it to the governance"
            )
        ix = um.adopt_program(gov_key, target, current.pubkey(), program_key)
        signers = [current] if current.pubkey() != payer.pubkey() else []
        purpose = run_purpose(f"adopt:{target}:governance:{gov_key}")
        signature = await send_write(client, cluster, purpose, [ix], payer, signers)
    get_run_logger().info(
        "%s adopted by governance %s (authority %s): %s",
        target,
        gov_key,
        state.authority,
        signature,
    )
    return str(signature)

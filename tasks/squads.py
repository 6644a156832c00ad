"""The steps of the upgrade under Squads v4 that touch the chain.

The runbook's key (the fee payer block) is a Squads member with Initiate and Execute but
never Vote: it hands the buffer to the vault, creates the vault transaction holding the
loader Upgrade and its proposal, waits reading the Proposal account (members vote where
they already do), and executes it. Every write goes through ``tasks.chain.send_write``
under a journal purpose, so a rerun finds what an earlier attempt sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import AccountNotFound, ChainError, HashMismatch, InputError, ProposalClosed
from domain.governance import chain_time
from programs import loader, rpc, send
from programs.squads import client as squads
from programs.squads.reads import read_multisig, read_proposal
from store.records import transactions as journal_records
from store.records.proposals import ProposalRecord
from tasks.chain import (
    READ_RETRIES,
    WRITE_RETRIES,
    RecordsJournal,
    rpc_client,
    send_execution,
    send_options,
    send_write,
)
from tasks.records import records_engine

# The Squads app's URL shape for one transaction of a multisig (app.squads.so).
SQUADS_APP_URL = "https://app.squads.so/squads/{multisig}/transactions/{index}"


@dataclass(frozen=True)
class SquadsUpgrade:
    """The vault transaction of one upgrade and its proposal, as created on chain."""

    multisig: str
    vault: str
    transaction_index: int
    transaction: str
    proposal: str
    spill: str
    signature: str

    @property
    def link(self) -> str:
        return SQUADS_APP_URL.format(multisig=self.multisig, index=self.transaction_index)

    def approve_command(self, rpc_url: str) -> str:
        return (
            f"runbooks squads approve --multisig {self.multisig} "
            f"--transaction-index {self.transaction_index} "
            f"--keypair <your keypair file or usb://ledger> --url {rpc_url}"
        )


def create_purpose(proposal_id: int) -> str:
    """The journal purpose of the vault transaction and proposal of a records proposal."""
    return f"squads-create:proposal:{proposal_id}"


def vault_of(multisig: str) -> Pubkey:
    """The vault (index 0) of ``multisig``: the programs' upgrade authority."""
    return squads.vault_pda(Pubkey.from_string(multisig), 0)[0]


def upgrade_instruction(program_id: str, buffer: str, vault: Pubkey, spill: str) -> Instruction:
    """The loader Upgrade the vault signs, the buffer's lamports going to ``spill``."""
    return loader.upgrade(
        Pubkey.from_string(program_id),
        Pubkey.from_string(buffer),
        vault,
        Pubkey.from_string(spill),
    )


@task(name="hand-buffer-to-squads-vault", **WRITE_RETRIES)
async def hand_buffer_to_vault(
    cluster: SolanaCluster,
    program_id: str,
    buffer: str,
    multisig: str,
    expected_sha256: str | None,
    fee_payer_block: str,
) -> None:
    """Make the vault the buffer's authority: already so, nothing is sent; held by the
    runbook's key, it is handed over (after the program's authority and the buffer's hash
    are checked, and read back after); held by anyone else, refused naming the command."""
    vault = vault_of(multisig)
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, Pubkey.from_string(program_id))
        buf = await rpc.read_buffer(client, Pubkey.from_string(buffer))
        if buf.authority == str(vault):
            return
        if buf.authority != str(payer.pubkey()):
            raise InputError(
                f"buffer {buffer}'s authority is {buf.authority}, not the Squads vault {vault} "
                f"of multisig {multisig} nor this runbook's key {payer.pubkey()}: run "
                f"`solana program set-buffer-authority {buffer} --new-buffer-authority {vault}`; "
                "nothing was recorded or sent"
            )
        # Checked before the hand-over: a buffer given to the vault cannot be taken back.
        if program.authority != str(vault):
            raise InputError(
                f"program {program_id}'s upgrade authority is {program.authority}, not the "
                f"Squads vault {vault} of multisig {multisig}: transfer it to the vault first; "
                "nothing was recorded or sent"
            )
        if expected_sha256 is not None and buf.sha256 != expected_sha256:
            raise HashMismatch(f"buffer {buffer}", expected_sha256, buf.sha256)
        hand_over = loader.set_authority(Pubkey.from_string(buffer), payer.pubkey(), vault)
        await send_write(client, cluster, f"squads-buffer-authority:{buffer}", [hand_over], payer)
        after = await rpc.read_buffer(client, Pubkey.from_string(buffer))
    if after.authority != str(vault):
        raise ChainError(
            f"buffer {buffer}'s authority is {after.authority} after the hand-over, not the "
            f"vault {vault}; investigate before anything else"
        )
    get_run_logger().info("buffer %s handed to the Squads vault %s", buffer, vault)


async def _read_vault_transaction(
    client: AsyncClient, multisig: Pubkey, index: int
) -> squads.VaultTransaction | None:
    address = squads.transaction_pda(multisig, index)[0]
    account = (await client.get_account_info(address, Confirmed, encoding="base64")).value
    if account is None:
        return None
    if account.owner != squads.PROGRAM_ID:
        raise ChainError(f"{address} is owned by {account.owner}, not the Squads program")
    try:
        return squads.decode_vault_transaction(bytes(account.data))
    except ValueError as exc:
        raise ChainError(f"{address} is not a Squads vault transaction: {exc}") from None


def _created(multisig: Pubkey, index: int, spill: str, signature: str) -> SquadsUpgrade:
    return SquadsUpgrade(
        multisig=str(multisig),
        vault=str(squads.vault_pda(multisig, 0)[0]),
        transaction_index=index,
        transaction=str(squads.transaction_pda(multisig, index)[0]),
        proposal=str(squads.proposal_pda(multisig, index)[0]),
        spill=spill,
        signature=signature,
    )


def create_instructions(
    multisig: Pubkey, index: int, creator: Pubkey, inner: list[Instruction], memo: str | None
) -> list[Instruction]:
    """vault_transaction_create holding ``inner`` and proposal_create, one transaction."""
    return [
        squads.vault_transaction_create(
            multisig=multisig,
            transaction_index=index,
            creator=creator,
            instructions=inner,
            memo=memo,
        ),
        squads.proposal_create(multisig=multisig, transaction_index=index, creator=creator),
    ]


def set_authority_instruction(program_id: str, vault: Pubkey, new_authority: str) -> Instruction:
    """The loader SetAuthorityChecked the vault signs: the new authority must sign too, as
    an extra signer of the vault_transaction_execute transaction (the SDK marks it a
    signer among the execute instruction's remaining accounts)."""
    return loader.set_authority_checked(
        loader.programdata_address(Pubkey.from_string(program_id)),
        vault,
        Pubkey.from_string(new_authority),
    )


async def create_vault_proposal(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    multisig: str,
    inner: list[Instruction],
    fee_payer_block: str,
    *,
    memo: str,
    spill: str = "",
) -> SquadsUpgrade:
    """Create the vault transaction holding ``inner`` (the vault signing) and its proposal,
    at the multisig's next transaction index, once: a rerun finds the one its journal says
    landed, or the latest vault transaction when it is this runbook's with this message."""
    logger = get_run_logger()
    ms_key = Pubkey.from_string(multisig)
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    vault = squads.vault_pda(ms_key, 0)[0]
    ours = squads.compile_message(inner, vault)
    journal = RecordsJournal(create_purpose(proposal.id))
    async with rpc_client(cluster) as client:
        await send.settle_unsettled(client, journal, send_options(cluster))
        for row in reversed(journal_records.transactions(records_engine(), journal.purpose)):
            if row.status == "landed" and row.details:
                # The spill written ahead with it: the stored message holds that one.
                index = int(row.details["transaction_index"])
                sent_spill = str(row.details.get("spill", ""))
                found = _created(ms_key, index, sent_spill, row.signature)
                logger.info("vault transaction %d found in the journal", found.transaction_index)
                return found
        state = await read_multisig(client, ms_key)
        latest = state.transaction_index
        if latest > 0:
            earlier = await _read_vault_transaction(client, ms_key, latest)
            if (
                earlier is not None
                and earlier.creator == payer.pubkey()
                and earlier.message == ours
            ):
                logger.info("vault transaction %d is this run's: not created again", latest)
                return _created(ms_key, latest, spill, "")
        index = latest + 1
        journal.details = {"transaction_index": index, "multisig": multisig, "spill": spill}
        signature = await send.send_and_confirm(
            client,
            create_instructions(ms_key, index, payer.pubkey(), inner, memo),
            payer,
            options=send_options(cluster),
            journal=journal,
        )
    logger.info("vault transaction and proposal %d of %s created: %s", index, multisig, signature)
    return _created(ms_key, index, spill, str(signature))


@task(name="create-squads-upgrade", **WRITE_RETRIES)
async def create_upgrade_proposal(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    multisig: str,
    spill: str,
    fee_payer_block: str,
) -> SquadsUpgrade:
    """The vault transaction holding the loader Upgrade (upgrade and rollback) and its
    proposal, created once (``create_vault_proposal``)."""
    vault = vault_of(multisig)
    upgrade = upgrade_instruction(proposal.program_id, proposal.buffer or "", vault, spill)
    return await create_vault_proposal(
        cluster,
        proposal,
        multisig,
        [upgrade],
        fee_payer_block,
        memo=f"runbooks {proposal.kind} proposal #{proposal.id}",
        spill=spill,
    )


@task(name="create-squads-set-authority", **WRITE_RETRIES)
async def create_set_authority_proposal(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    multisig: str,
    new_authority: str,
    fee_payer_block: str,
) -> SquadsUpgrade:
    """The vault transaction holding SetAuthorityChecked to ``new_authority`` and its
    proposal, created once (``create_vault_proposal``)."""
    rotate = set_authority_instruction(proposal.program_id, vault_of(multisig), new_authority)
    return await create_vault_proposal(
        cluster,
        proposal,
        multisig,
        [rotate],
        fee_payer_block,
        memo=f"runbooks key rotation proposal #{proposal.id}",
    )


@task(name="read-squads-proposal", **READ_RETRIES)
async def read_proposal_and_clock(
    cluster: SolanaCluster, upgrade: SquadsUpgrade
) -> tuple[squads.Proposal, int]:
    """The Proposal (AccountNotFound when none) and the cluster's Clock unix_timestamp."""
    async with rpc_client(cluster) as client:
        found = await read_proposal(
            client, Pubkey.from_string(upgrade.multisig), upgrade.transaction_index
        )
        now = await chain_time(client)
    if found is None:
        raise AccountNotFound(
            f"no Squads proposal {upgrade.transaction_index} of multisig {upgrade.multisig} "
            f"at {upgrade.proposal}: it was never created here, or closed"
        )
    return found, now


class SquadsProposalClosed(ProposalClosed):
    """A Squads proposal Rejected or Cancelled (``status``: the records' word for it)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


def _closed(upgrade: SquadsUpgrade, found: squads.Proposal) -> SquadsProposalClosed:
    by = {"Rejected": found.rejected, "Cancelled": found.cancelled}[found.status.kind]
    who = ", ".join(str(k) for k in by) or "the members"
    status = found.status.kind.lower()
    return SquadsProposalClosed(
        f"Squads proposal {upgrade.transaction_index} of multisig {upgrade.multisig} was "
        f"{status} by {who}: nothing executed",
        status,
    )


Sleep = Callable[[float], Awaitable[None]]


@task(name="wait-for-squads-approval", cache_policy=NO_CACHE)
async def wait_for_approval(
    cluster: SolanaCluster,
    upgrade: SquadsUpgrade,
    *,
    poll_seconds: float,
    timeout_seconds: float,
    inline_seconds: float | None = None,
    sleep: Sleep = asyncio.sleep,
) -> squads.Proposal:
    """Poll the Proposal until it is Approved (or Executed); Rejected or Cancelled raise
    ProposalClosed, as a rejection of the other backends does. With ``inline_seconds``,
    a proposal still pending after that long is returned as it is (the flow suspends
    rather than hold a worker for days)."""
    logger = get_run_logger()
    waited = 0.0
    while True:
        found, _ = await read_proposal_and_clock(cluster, upgrade)
        kind = found.status.kind
        if kind in ("Approved", "Executed", "Executing"):
            return found
        if kind in ("Rejected", "Cancelled"):
            raise _closed(upgrade, found)
        if waited >= timeout_seconds:
            raise ProposalClosed(
                f"Squads proposal {upgrade.transaction_index} is still {kind} after "
                f"{int(waited)} s (the sign-off window): nothing executed; start a new run"
            )
        if inline_seconds is not None and waited >= inline_seconds:
            return found
        logger.info(
            "Squads proposal %d: %s, %d approval(s); next read in %.0f s",
            upgrade.transaction_index,
            kind,
            len(found.approved),
            poll_seconds,
        )
        await sleep(poll_seconds)
        waited += poll_seconds


@task(name="wait-out-squads-time-lock", cache_policy=NO_CACHE)
async def wait_out_time_lock(
    cluster: SolanaCluster,
    upgrade: SquadsUpgrade,
    time_lock: int,
    *,
    poll_seconds: float,
    sleep: Sleep = asyncio.sleep,
) -> squads.Proposal:
    """Wait until ``approved timestamp + time_lock`` has passed on the cluster's clock
    (what the program checks), reading the Proposal each time: a cancel ends the run."""
    while True:
        found, now = await read_proposal_and_clock(cluster, upgrade)
        kind = found.status.kind
        if kind in ("Rejected", "Cancelled"):
            raise _closed(upgrade, found)
        if kind != "Approved" or found.status.timestamp is None:
            return found  # executed (elsewhere): the execution step reads the program
        left = found.status.timestamp + time_lock - now
        if left <= 0:
            return found
        get_run_logger().info("Squads time lock: %d s left on the cluster clock", left)
        await sleep(min(poll_seconds, left))


def time_lock_left(found: squads.Proposal, time_lock: int, now: int) -> int:
    """Seconds of the time lock still to run at cluster time ``now`` (0 when passed)."""
    if found.status.kind != "Approved" or found.status.timestamp is None:
        return 0
    return max(0, found.status.timestamp + time_lock - now)


@task(name="execute-squads-upgrade", **WRITE_RETRIES)
async def send_squads_execution(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    upgrade: SquadsUpgrade,
    fee_payer_block: str,
) -> str | None:
    """vault_transaction_execute of the upgrade; None when the program already holds the
    proposal's hash. The stored message is checked to be this upgrade's first."""
    logger = get_run_logger()
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    ms_key = Pubkey.from_string(upgrade.multisig)
    expected = proposal.buffer_hash or ""
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, Pubkey.from_string(proposal.program_id))
        if program.sha256 == expected:
            logger.info(
                "program %s already holds sha256 %s: nothing sent", proposal.program_id, expected
            )
            return None
        vault = Pubkey.from_string(upgrade.vault)
        upgrade_ix = upgrade_instruction(
            proposal.program_id, proposal.buffer or "", vault, upgrade.spill
        )
        stored = await _approved_transaction(client, upgrade, [upgrade_ix], "upgrade")
        ix = squads.vault_transaction_execute(
            multisig=ms_key, member=payer.pubkey(), transaction=stored
        )
        signature = await send_execution(client, cluster, proposal.id, [ix], payer, before=program)
    logger.info("Squads vault transaction %d executed: %s", upgrade.transaction_index, signature)
    return str(signature)


async def _approved_transaction(
    client: AsyncClient, upgrade: SquadsUpgrade, inner: list[Instruction], what: str
) -> squads.VaultTransaction:
    """The stored vault transaction, once its proposal is Approved and its message is
    exactly ``inner`` signed by the vault (else nothing is executed)."""
    ms_key = Pubkey.from_string(upgrade.multisig)
    stored = await _read_vault_transaction(client, ms_key, upgrade.transaction_index)
    if stored is None:
        raise AccountNotFound(
            f"no vault transaction {upgrade.transaction_index} of multisig "
            f"{upgrade.multisig} at {upgrade.transaction}"
        )
    found = await read_proposal(client, ms_key, upgrade.transaction_index)
    if found is None or found.status.kind != "Approved":
        raise ChainError(
            f"Squads proposal {upgrade.transaction_index} is "
            f"{found.status.kind if found else 'missing'}, not Approved: not executed"
        )
    if stored.message != squads.compile_message(inner, Pubkey.from_string(upgrade.vault)):
        raise ChainError(
            f"vault transaction {upgrade.transaction_index} of {upgrade.multisig} is not "
            f"this runbook's {what}: not executed"
        )
    return stored


def set_authority_purpose(proposal_id: int) -> str:
    """The journal purpose of a Squads key rotation's execution."""
    return f"squads-set-authority:proposal:{proposal_id}"


@task(name="execute-squads-set-authority", **WRITE_RETRIES)
async def send_squads_set_authority(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    upgrade: SquadsUpgrade,
    new_authority: str,
    new_authority_block: str,
    fee_payer_block: str,
) -> str | None:
    """vault_transaction_execute of the SetAuthorityChecked, the new authority signing as
    the extra signer the stored message names; None when the program already has it."""
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    new_key = (await load_block(SolanaKeypair, new_authority_block)).keypair()
    if str(new_key.pubkey()) != new_authority:
        raise InputError(
            f"the new authority block {new_authority_block!r} does not hold {new_authority}"
        )
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, Pubkey.from_string(proposal.program_id))
        if program.authority == new_authority:
            get_run_logger().info(
                "%s already has upgrade authority %s: nothing sent",
                proposal.program_id,
                new_authority,
            )
            return None
        if program.authority != upgrade.vault:
            raise ChainError(
                f"{proposal.program_id}'s upgrade authority is {program.authority}, neither "
                f"the vault {upgrade.vault} nor {new_authority}: someone else changed it; "
                "stop and investigate"
            )
        vault = Pubkey.from_string(upgrade.vault)
        rotate = set_authority_instruction(proposal.program_id, vault, new_authority)
        stored = await _approved_transaction(client, upgrade, [rotate], "key rotation")
        ix = squads.vault_transaction_execute(
            multisig=Pubkey.from_string(upgrade.multisig),
            member=payer.pubkey(),
            transaction=stored,
        )
        signature = await send_write(
            client, cluster, set_authority_purpose(proposal.id), [ix], payer, [new_key]
        )
    get_run_logger().info(
        "Squads vault transaction %d executed: %s", upgrade.transaction_index, signature
    )
    return str(signature)

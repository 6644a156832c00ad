"""Tasks that touch the chain. Reads retry freely; writes read chain state first so a
retried task never sends the same change twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from solana.rpc.async_api import AsyncClient
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import (
    ChainError,
    HashMismatch,
    RpcUnavailable,
    RunbookError,
    TransactionExpired,
)
from domain import signoff
from programs import loader, rpc, send
from programs.rpc import BufferInfo, ProgramInfo
from programs.rpc_transport import RetryPolicy, retrying_client
from programs.send import SendOptions, Settlement, Signed
from store.records import transactions as journal_records
from store.records.proposals import ProposalRecord
from tasks.records import current_run_id, records_engine

# Input and chain-state errors will not change by retrying; only transport faults do.
NO_RETRY = (RunbookError,)
# ... and the RPC retry policy giving up: the endpoints may answer again in a while; and a
# transaction that expired unseen (the retry reads the chain, then signs anew).
TRANSIENT = (RpcUnavailable, TransactionExpired)


def _retry_transport_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transport faults; a RunbookError (bad input, chain state) will not change."""
    # _sync: this hook is called from the async task engine, but reads a local result.
    error = state.result(raise_on_failure=False, _sync=True)
    if isinstance(error, TRANSIENT):
        return True
    return isinstance(error, Exception) and not isinstance(error, NO_RETRY)


READ_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": 2,
    "retry_condition_fn": _retry_transport_only,
}
# Writes read chain state before sending, so a retry never repeats a change.
WRITE_RETRIES: dict[str, Any] = {**READ_RETRIES, "retries": 2}


def retry_policy(cluster: SolanaCluster) -> RetryPolicy:
    """The cluster block's RPC retry budget and per-endpoint rate limit."""
    return RetryPolicy(
        budget_seconds=cluster.rpc_retry_seconds,
        requests_per_second=cluster.requests_per_second,
    )


@asynccontextmanager
async def rpc_client(cluster: SolanaCluster) -> AsyncIterator[AsyncClient]:
    """A client over every endpoint of ``cluster`` under the one retry policy
    (``programs.rpc_transport``): failover replaces a health probe, which turned one
    transient fault into a permanent error."""
    client = retrying_client(cluster.rpc_urls, retry_policy(cluster))
    try:
        yield client
    finally:
        await client.close()


def send_options(cluster: SolanaCluster) -> SendOptions:
    """How writes are sent on ``cluster``: its commitment and priority-fee cap."""
    return SendOptions(
        commitment=cluster.commitment, max_priority_fee=cluster.max_priority_fee_micro_lamports
    )


class RecordsJournal:
    """``programs.send.Journal`` over the records' write-ahead journal, for one purpose."""

    def __init__(self, purpose: str, details: Mapping[str, Any] | None = None) -> None:
        self.purpose = purpose
        self.details = details

    def unsettled(self) -> list[Signed]:
        return [
            Signed(row.signature, row.wire, row.last_valid_block_height)
            for row in journal_records.unsettled(records_engine(), self.purpose)
        ]

    def landed(self) -> list[str]:
        rows = journal_records.transactions(records_engine(), self.purpose)
        return [row.signature for row in rows if row.status == "landed"]

    def write_ahead(self, signed: Sequence[Signed]) -> None:
        journal_records.write_ahead(
            records_engine(),
            self.purpose,
            signed,
            details=self.details,
            flow_run_id=current_run_id(),
        )

    def settle(self, signature: str, status: Settlement, error: str | None = None) -> None:
        journal_records.settle(records_engine(), signature, status, error)

    def settle_many(self, settlements: Sequence[tuple[str, Settlement, str | None]]) -> None:
        journal_records.settle_many(records_engine(), settlements)


async def send_write(
    client: AsyncClient,
    cluster: SolanaCluster,
    purpose: str,
    instructions: Sequence[Instruction],
    payer: Keypair,
    signers: Sequence[Keypair] = (),
    *,
    details: Mapping[str, Any] | None = None,
) -> Signature:
    """Every chain write of a task: ``programs.send`` with the cluster's options, its
    signature written ahead under ``purpose`` (one logical write: the same purpose is
    never sent twice once it landed)."""
    return await send.send_and_confirm(
        client,
        instructions,
        payer,
        signers,
        options=send_options(cluster),
        journal=RecordsJournal(purpose, details),
    )


def execution_purpose(proposal_id: int) -> str:
    """The journal purpose of a proposal's execution (upgrade, rollback)."""
    return f"execute:proposal:{proposal_id}"


def run_purpose(what: str) -> str:
    """A purpose for a write that may recur (a pause, an unpause): one per flow run (a
    retried run keeps its id); outside a flow run, one per call."""
    return f"{what}:run:{current_run_id() or uuid.uuid4().hex}"


async def send_execution(
    client: AsyncClient,
    cluster: SolanaCluster,
    proposal_id: int,
    instructions: Sequence[Instruction],
    payer: Keypair,
    signers: Sequence[Keypair] = (),
    *,
    before: ProgramInfo,
) -> Signature:
    """Send a proposal's execution, the program as it was ``before`` written ahead with it:
    what ``landed_execution`` gives back after a crash."""
    return await send_write(
        client,
        cluster,
        execution_purpose(proposal_id),
        instructions,
        payer,
        signers,
        details=asdict(before),
    )


@task(name="landed-execution", **READ_RETRIES)
async def landed_execution(
    cluster: SolanaCluster, proposal_id: int
) -> tuple[str, ProgramInfo] | None:
    """The execution an earlier attempt of this proposal sent and that landed: its
    signature and the program as it was before (written ahead with the transaction).

    Unsettled transactions are settled first (resent while they may still land), so a run
    killed right after sending finds its own execution here instead of mistaking it for
    one done elsewhere."""
    journal = RecordsJournal(execution_purpose(proposal_id))
    async with rpc_client(cluster) as client:
        await send.settle_unsettled(client, journal, send_options(cluster))
    for row in reversed(journal_records.transactions(records_engine(), journal.purpose)):
        if row.status == "landed" and row.details:
            return row.signature, ProgramInfo(**row.details)
    return None


@task(name="inspect-upgrade", **READ_RETRIES)
async def inspect_upgrade(
    cluster: SolanaCluster, program_id: str, buffer: str, authority: str, expected_hash: str | None
) -> tuple[ProgramInfo, BufferInfo]:
    """Read the program and the buffer and check every precondition of the upgrade; a
    ProgramData too small is none (``tasks.buffer.make_room`` extends it before execution)."""
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, Pubkey.from_string(program_id))
        buf = await rpc.read_buffer(client, Pubkey.from_string(buffer))
    rpc.check_upgrade_ready(
        program, buf, Pubkey.from_string(authority), expected_hash, extendable=True
    )
    get_run_logger().info(
        "buffer %s verified: sha256 %s, %d bytes, authority %s",
        buffer,
        buf.sha256,
        buf.data_len,
        buf.authority,
    )
    return program, buf


@task(name="read-program", **READ_RETRIES)
async def read_program(cluster: SolanaCluster, program_id: str) -> ProgramInfo:
    async with rpc_client(cluster) as client:
        return await rpc.read_program(client, Pubkey.from_string(program_id))


@task(name="send-upgrade", **WRITE_RETRIES)
async def send_upgrade(
    cluster: SolanaCluster,
    proposal: ProposalRecord,
    approvals: int,
    authority_block: str,
    fee_payer_block: str,
) -> str | None:
    """Upgrade the proposal's program from its buffer; None when the chain already holds
    the proposal's hash.

    Refuses before the timelock has run out. Idempotent: the ProgramData is read first,
    so a retry after a lost reply finds the upgrade done and sends nothing.
    """
    signoff.check_executable(
        proposal_id=proposal.id,
        status=proposal.status,
        approvals=approvals,
        threshold=proposal.threshold,
        timelock_ends_at=proposal.timelock_ends_at,
        now=datetime.now(UTC),
    )
    logger = get_run_logger()
    expected_hash = proposal.buffer_hash or ""
    authority = (await load_block(SolanaKeypair, authority_block)).keypair()
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    program_key = Pubkey.from_string(proposal.program_id)
    buffer_key = Pubkey.from_string(proposal.buffer or "")
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, program_key)
        if program.sha256 == expected_hash:
            logger.info(
                "program %s already holds sha256 %s: nothing sent", program_key, expected_hash
            )
            return None
        buf = await rpc.read_buffer(client, buffer_key)
        rpc.check_upgrade_ready(program, buf, authority.pubkey(), expected_hash)
        ix = loader.upgrade(program_key, buffer_key, authority.pubkey(), payer.pubkey())
        signature = await send_execution(
            client, cluster, proposal.id, [ix], payer, [authority], before=program
        )
    logger.info("upgrade of %s sent: %s", program_key, signature)
    return str(signature)


@task(name="verify-upgrade", **READ_RETRIES)
async def verify_upgrade(
    cluster: SolanaCluster, before: ProgramInfo, expected_hash: str
) -> ProgramInfo:
    """After the upgrade: the hash is the proposal's, the slot advanced, the authority kept."""
    async with rpc_client(cluster) as client:
        after = await rpc.read_program(client, Pubkey.from_string(before.program_id))
    if after.sha256 != expected_hash:
        raise HashMismatch(
            f"program {before.program_id} after the upgrade", expected_hash, after.sha256
        )
    if before.sha256 != expected_hash and after.slot <= before.slot:
        raise ChainError(
            f"program {before.program_id}: ProgramData slot {after.slot} did not advance past "
            f"{before.slot}; the upgrade did not land"
        )
    if after.authority != before.authority:
        raise ChainError(
            f"program {before.program_id}: upgrade authority changed from {before.authority} "
            f"to {after.authority} during the upgrade; investigate before anything else"
        )
    return after

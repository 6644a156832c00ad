"""Tasks that keep program binaries for rollback: archive the binary an upgrade is about
to replace, and write an archived binary to a new buffer."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import AccountNotFound, ChainError, HashMismatch, InputError, RecordsError
from domain import rollback
from programs import loader, rpc
from programs.rpc import BufferInfo
from programs.send import write_buffer
from store.records import archives as archives_records
from store.records.archives import ArchiveRecord
from tasks.chain import (
    READ_RETRIES,
    WRITE_RETRIES,
    RecordsJournal,
    rpc_client,
    send_options,
    send_write,
)
from tasks.records import current_run_id, records_engine


@task(name="archive-program", cache_policy=NO_CACHE, **READ_RETRIES)
async def archive_program(
    cluster: SolanaCluster, program_id: str, proposal_id: int | None = None
) -> ArchiveRecord:
    """Keep the program's current binary (ProgramData bytes and hash) in the records.

    Idempotent: the same binary is stored once (seed 000's "Program Backup").
    """
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, Pubkey.from_string(program_id))
        account = await rpc.fetch_account(client, Pubkey.from_string(program.programdata))
    if account is None:
        raise AccountNotFound(f"ProgramData {program.programdata} of {program_id} is missing")
    data = bytes(account.data)
    state = loader.decode_state(data)
    assert isinstance(state, loader.ProgramData)  # read_program checked it
    record = archives_records.archive_program(
        records_engine(),
        cluster=cluster.cluster,
        program_id=program_id,
        sha256=loader.programdata_hash(data),
        data=rollback.archived_bytes(loader.program_bytes(data)),
        slot=state.slot,
        authority=str(state.authority) if state.authority else None,
        proposal_id=proposal_id,
        flow_run_id=current_run_id(),
    )
    get_run_logger().info(
        "archived %s: sha256 %s, %d bytes (archive #%d)",
        program_id,
        record.sha256,
        record.size,
        record.id,
    )
    return record


@task(name="write-archived-buffer", cache_policy=NO_CACHE, **WRITE_RETRIES)
async def write_archived_buffer(
    cluster: SolanaCluster,
    program_id: str,
    sha256: str,
    authority_block: str | None,
    fee_payer_block: str,
    *,
    governance_authority: str | None = None,
) -> BufferInfo:
    """Write an archived binary to a new buffer owned by the upgrade authority; checks the
    buffer's hash equals the archived one.

    With ``governance_authority`` (a governance's authority PDA, the onchain backend) no
    upgrade key is loaded: the fee payer writes the buffer and hands it to the PDA, as
    `solana program set-buffer-authority` would, which upgrade_manager's proposals require.

    A retry after a failure part-way writes a fresh buffer; close the abandoned one
    (`solana program close <buffer>`) to recover its rent.
    """
    archive = archives_records.get_archive(records_engine(), cluster.cluster, program_id, sha256)
    if archive is None:
        raise RecordsError(
            f"no archived binary {sha256} of {program_id} on {cluster.cluster}; "
            "the upgrade runbook archives the binary it replaces before executing"
        )
    rollback.check_archive(archive)
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    if governance_authority is not None:
        authority = payer
    elif authority_block:
        authority = (await load_block(SolanaKeypair, authority_block)).keypair()
    else:
        raise InputError("writing a buffer for the upgrade authority needs its keypair block")
    async with rpc_client(cluster) as client:
        buffer_key = Keypair()
        buffer = await write_buffer(
            client,
            payer,
            buffer_key,
            authority,
            archive.data,
            options=send_options(cluster),
            journal=RecordsJournal(f"write-buffer:{buffer_key.pubkey()}"),
        )
        if governance_authority is not None:
            hand_over = loader.set_authority(
                buffer, payer.pubkey(), Pubkey.from_string(governance_authority)
            )
            await send_write(client, cluster, f"buffer-authority:{buffer}", [hand_over], payer)
        info = await rpc.read_buffer(client, buffer)
    if governance_authority is not None and info.authority != governance_authority:
        raise ChainError(
            f"buffer {buffer}'s authority is {info.authority}, not the governance's "
            f"{governance_authority}, after the hand-over"
        )
    if info.sha256 != archive.sha256:
        raise HashMismatch(
            f"buffer {buffer} written from archive #{archive.id}", sha256, info.sha256
        )
    get_run_logger().info("archived binary %s written to buffer %s", sha256, buffer)
    return info

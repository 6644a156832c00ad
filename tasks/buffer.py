"""Tasks that put a built program where an upgrade needs it: write the ``.so`` to a buffer
(resuming a half-written one) and hand it to the upgrade's authority; make room in the
ProgramData when the new binary is larger (ExtendProgram).

Resuming needs no secret: the buffer's address is written ahead with its create
transaction (the journal's ``details``), the buffer keypair signs that create only and is
then forgotten; the Writes are signed by the buffer's authority.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import ChainError, HashMismatch, InputError
from core.idempotency import NO_RUN, idempotency_key
from programs import loader, rpc, send
from programs.rpc import ProgramInfo
from store import records
from store.records import audit as audit_records
from store.records import transactions as journal_records
from tasks.chain import WRITE_RETRIES, RecordsJournal, rpc_client, send_options, send_write
from tasks.records import current_run_id, records_engine

EXTENDED_ACTION = "program.extended"
# What a fee payer must keep beyond the rent of an extension: the transaction's fees.
FEE_MARGIN_LAMPORTS = 100_000


def buffer_purpose(cluster: str, program_id: str, sha256: str, run_id: str | None) -> str:
    """The journal purpose of the buffer one flow run writes for ``sha256``: a retried or
    restarted run (same id) finds its buffer again."""
    return "write-buffer:" + idempotency_key(
        "write-buffer", cluster, program_id, sha256, run_id or NO_RUN
    )


def read_program_file(path: str, expected_sha256: str) -> bytes:
    """The built program at ``path`` on this worker, checked before anything is recorded or
    sent: it exists, is an sBPF ELF the loader can hold, and its verifiable-build hash is
    ``expected_sha256`` (HashMismatch naming both otherwise)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(
            f"program_file {path!r} is not a file on this worker; pass the path of the "
            "built .so (e.g. target/deploy/<name>.so)"
        )
    elf = file.read_bytes()
    loader.check_program_elf(elf, f"program_file {path!r}")
    actual = loader.verifiable_hash(elf)
    if actual != expected_sha256:
        raise HashMismatch(f"program_file {path!r}", expected_sha256, actual)
    return elf


def journaled_buffer(purpose: str) -> str | None:
    """The address of the buffer whose create landed under ``purpose``, if any."""
    for row in reversed(journal_records.transactions(records_engine(), f"{purpose}:create")):
        if row.status == "landed" and row.details:
            return str(row.details["buffer"])
    return None


@task(name="write-program-buffer", cache_policy=NO_CACHE, **WRITE_RETRIES)
async def write_program_buffer(
    cluster: SolanaCluster,
    program_id: str,
    program_file: str,
    expected_sha256: str,
    purpose: str,
    fee_payer_block: str,
    *,
    authority_block: str | None = None,
    governance_authority: str | None = None,
) -> str:
    """Write the program at ``program_file`` to a buffer and give it the upgrade's
    authority; the buffer's address.

    With ``governance_authority`` (onchain backend) the fee payer writes the buffer and
    hands it to that PDA; else the upgrade authority (``authority_block``) writes it and
    keeps it. Idempotent: the buffer of ``purpose`` is read back and only the chunks whose
    bytes differ are sent, the hand-over only when the authority is not the PDA's yet.
    A buffer already consumed by this run's upgrade is returned as it is.
    """
    logger = get_run_logger()
    elf = read_program_file(program_file, expected_sha256)  # the file may have changed
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    if governance_authority is not None:
        writer = payer
    elif authority_block:
        writer = (await load_block(SolanaKeypair, authority_block)).keypair()
    else:
        raise InputError("writing a buffer for the upgrade authority needs its keypair block")
    final = governance_authority or str(writer.pubkey())
    options = send_options(cluster)
    async with rpc_client(cluster) as client:
        creates = RecordsJournal(f"{purpose}:create")
        await send.settle_unsettled(client, creates, options)
        address = journaled_buffer(purpose)
        if address is None:
            key = Keypair()
            creates.details = {"buffer": str(key.pubkey()), "sha256": expected_sha256}
            await send.create_buffer(
                client, payer, key, writer.pubkey(), len(elf), options, creates
            )
            address = str(key.pubkey())
            logger.info("buffer %s created for %d bytes", address, len(elf))
        buffer = Pubkey.from_string(address)
        # One read of the 512 KiB buffer gives its state and the bytes to compare.
        account = await rpc.fetch_account(client, buffer)
        if account is None:
            return await _consumed(client, program_id, address, expected_sha256)
        info = rpc.buffer_info(buffer, account)
        if info.authority == str(writer.pubkey()):
            # A confirmation round's Writes settle in one statement (settle_many).
            writes = RecordsJournal(f"{purpose}:write", {"buffer": address})
            if await send.settle_unsettled(client, writes, options):
                # A killed run's Writes may have landed since the read: read again.
                account = await rpc.fetch_account(client, buffer)
                if account is None:
                    return await _consumed(client, program_id, address, expected_sha256)
            sent = await send.write_missing(
                client,
                payer,
                buffer,
                writer,
                elf,
                current=loader.program_bytes(bytes(account.data)),
                options=options,
                journal=writes,
            )
            logger.info("buffer %s: %d Write transaction(s) sent", address, sent)
            if governance_authority is not None:
                hand_over = loader.set_authority(
                    buffer, writer.pubkey(), Pubkey.from_string(governance_authority)
                )
                await send_write(client, cluster, f"{purpose}:authority", [hand_over], payer)
            info = await rpc.read_buffer(client, buffer)
    if info.authority != final:
        raise ChainError(
            f"buffer {address}'s authority is {info.authority}, not {final}: it was changed "
            "outside this run; start a new run"
        )
    if info.sha256 != expected_sha256:
        raise HashMismatch(
            f"buffer {address} written from {program_file}", expected_sha256, info.sha256
        )
    logger.info("buffer %s holds sha256 %s, authority %s", address, info.sha256, final)
    return address


async def _consumed(client: AsyncClient, program_id: str, buffer: str, sha256: str) -> str:
    """A buffer of this run that no longer exists: an upgrade from it closed it."""
    program = await rpc.read_program(client, Pubkey.from_string(program_id))
    if program.sha256 != sha256:
        raise ChainError(
            f"buffer {buffer} written by this run is gone and program {program_id} does not "
            f"hold {sha256}: it was closed outside this run; start a new run"
        )
    return buffer


def extension_purpose(subject: str) -> str:
    return f"extend:{subject}"


@task(name="extend-program", cache_policy=NO_CACHE, **WRITE_RETRIES)
async def make_room(
    cluster: SolanaCluster, program_id: str, buffer: str, fee_payer_block: str, subject: str
) -> ProgramInfo:
    """ExtendProgram until the ProgramData of ``program_id`` can hold ``buffer``'s bytes;
    the program as it is then. The fee payer funds the rent (no authority signs), at least
    ``loader.MIN_EXTEND_BYTES`` at a time. Idempotent: the capacity is read first. The
    extension is recorded as an audit row on ``subject``."""
    logger = get_run_logger()
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    program_key = Pubkey.from_string(program_id)
    purpose = extension_purpose(subject)
    async with rpc_client(cluster) as client:
        program = await rpc.read_program(client, program_key)
        if await rpc.fetch_account(client, Pubkey.from_string(buffer)) is None:
            return program  # consumed: the upgrade from it is done
        buf = await rpc.read_buffer(client, Pubkey.from_string(buffer))
        additional = loader.extension_bytes(program.capacity, buf.data_len)
        if additional == 0:
            _audit_landed(purpose, subject, program)  # killed before its audit row
            return program
        size = loader.PROGRAMDATA_METADATA_SIZE + program.capacity + additional
        rent = (await client.get_minimum_balance_for_rent_exemption(size)).value
        held = (await client.get_balance(Pubkey.from_string(program.programdata))).value
        owed = max(0, rent - held)
        balance = (await client.get_balance(payer.pubkey())).value
        if balance < owed + FEE_MARGIN_LAMPORTS:
            raise ChainError(
                f"the fee payer {payer.pubkey()} ({fee_payer_block}) holds {balance} lamports; "
                f"extending the ProgramData of {program_id} by {additional} bytes needs "
                f"{owed} lamports of rent plus fees: fund it, then retry the run"
            )
        ix = loader.extend_program(program_key, payer.pubkey(), additional)
        details = {"capacity_before": program.capacity, "additional_bytes": additional}
        await send_write(client, cluster, purpose, [ix], payer, details=details)
        after = await rpc.read_program(client, program_key)
    if after.capacity < buf.data_len:
        raise ChainError(
            f"ProgramData of {program_id} holds {after.capacity} bytes after ExtendProgram, "
            f"still fewer than buffer {buffer}'s {buf.data_len}"
        )
    _audit_landed(purpose, subject, after)
    logger.info(
        "ProgramData of %s extended by %d to %d bytes", program_id, additional, after.capacity
    )
    return after


def _audit_landed(purpose: str, subject: str, program: ProgramInfo) -> None:
    """The audit row of the extension that landed under ``purpose``, once."""
    engine = records_engine()
    landed = [r for r in journal_records.transactions(engine, purpose) if r.status == "landed"]
    if not landed or audit_records.audit_events(engine, subject, action=EXTENDED_ACTION):
        return
    audit_records.audit(
        engine,
        records.DEFAULT_ACTOR,
        EXTENDED_ACTION,
        subject,
        {
            "program_id": program.program_id,
            "signature": landed[-1].signature,
            **(landed[-1].details or {}),
            "capacity": program.capacity,
        },
        current_run_id(),
    )

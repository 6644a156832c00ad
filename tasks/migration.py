"""Tasks of the migration runbook: discover accounts, migrate a batch, verify a batch.

A batch is up to 1,000 accounts, read 100 per getMultipleAccounts, all of a batch's
reads in one JSON-RPC batch request. Migrating a batch reads the chain first and records
each account's snapshot before anything is sent for it, so a retried or rerun batch
never sends a migrate for an account already on the new layout. Migrates go through
``programs.send`` (one simulation and one fee read per batch, then the transactions sent
without the RPC's preflight: the simulation checked them), their signatures written
ahead to the journal under ``migrate:{migration id}``, each row naming the accounts its
transaction covers. Before reading the chain, a batch settles what an earlier attempt
left in flight for its accounts, so an in-flight migrate lands (or expires) rather than
being sent twice, and an account found migrated is recorded with the landed transaction
that did it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.models import DataSliceOpts
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import ChainError, TransactionFailed
from domain.migration import AccountKeys, shard_of_key
from programs import rpc, send
from programs.plugin import AccountMigrator, get_migrator
from programs.send import SendOptions, Signed
from store.records import migrations
from store.records import transactions as journal_records
from store.records.migrations import AccountOutcome, AccountState, MigrationRunRecord, Snapshot
from store.records.transactions import TransactionRecord
from tasks.chain import READ_RETRIES, WRITE_RETRIES, RecordsJournal, rpc_client, send_options
from tasks.kill_switch import ensure_released
from tasks.records import current_run_id, records_engine

FETCH_LIMIT = rpc.ACCOUNTS_PER_CALL  # getMultipleAccounts answers at most 100 addresses
# A batch is one Prefect task: its reads go out as one batch request, its migrates under
# one simulation, fee read and blockhash. Larger batches cost less per account (the flow's
# overhead is per batch); past a few hundred the gain is small and a retry redoes more.
BATCH_LIMIT = 10 * FETCH_LIMIT
DEFAULT_BATCH_SIZE = 5 * FETCH_LIMIT


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: counts, and the accounts that failed with why."""

    accounts: int
    migrated: int = 0  # migrate sent and confirmed now
    found_migrated: int = 0  # already on the new layout on chain: nothing sent
    skipped: int = 0  # failed before (no retry asked), or not an account to migrate
    transactions: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    # Migrated accounts that do not match their snapshots (also in ``failed``).
    mismatches: dict[str, str] = field(default_factory=dict)


def migration_purpose(migration_id: int) -> str:
    """The journal purpose of every migrate transaction of a migration run."""
    return f"migrate:{migration_id}"


class MigrationJournal(RecordsJournal):
    """The migration's write-ahead journal, seen by one batch: each transaction's row
    names the accounts it migrates (``details["accounts"]``), and the batch settles and
    reads only the rows that cover its own accounts (other batches run meanwhile)."""

    def __init__(
        self, migration_id: int, accounts: Iterable[str], chunks: Sequence[Sequence[str]] = ()
    ) -> None:
        super().__init__(migration_purpose(migration_id))
        self.migration_id = migration_id
        self.accounts = frozenset(accounts)
        self.chunks = [list(chunk) for chunk in chunks]

    def covering(self, chunks: Sequence[Sequence[str]]) -> MigrationJournal:
        """This journal for a send of ``chunks``: one transaction per chunk, in order."""
        return MigrationJournal(self.migration_id, self.accounts, chunks)

    def unsettled(self) -> list[Signed]:
        rows = journal_records.unsettled(records_engine(), self.purpose)
        return [
            Signed(row.signature, row.wire, row.last_valid_block_height)
            for row in rows
            if self.accounts.intersection(_covered(row))
        ]

    def write_ahead(self, signed: Sequence[Signed]) -> None:
        journal_records.write_ahead(
            records_engine(),
            self.purpose,
            signed,
            details_each=[{"accounts": chunk} for chunk in self.chunks],
            flow_run_id=current_run_id(),
        )

    def landed_signatures(self) -> dict[str, str]:
        """Account -> the signature of the landed transaction that migrated it, for this
        batch's accounts (a migrate lands once: the chain is read before each send)."""
        found: dict[str, str] = {}
        for row in journal_records.transactions(records_engine(), self.purpose):
            if row.status == "landed":
                for address in self.accounts.intersection(_covered(row)):
                    found[address] = row.signature
        return found


def _covered(row: TransactionRecord) -> list[str]:
    accounts = (row.details or {}).get("accounts")
    return [a for a in accounts if isinstance(a, str)] if isinstance(accounts, list) else []


# One RPC client (one connection pool) for every batch of a migration run: a client per
# batch costs a TLS context load (~35 ms of CPU, even for http://) and new connections.
_shared_client: ContextVar[AsyncClient | None] = ContextVar("migration_rpc", default=None)
# The batches of one run take turns from blockhash to send (``send.send_batch``).
_send_gate: ContextVar[asyncio.Lock | None] = ContextVar("migration_send_gate", default=None)


@asynccontextmanager
async def shared_rpc(cluster: SolanaCluster) -> AsyncIterator[AsyncClient]:
    """Open the client the batches started inside this block share."""
    async with rpc_client(cluster) as client:
        token = _shared_client.set(client)
        gate = _send_gate.set(asyncio.Lock())
        try:
            yield client
        finally:
            _send_gate.reset(gate)
            _shared_client.reset(token)


@asynccontextmanager
async def _rpc(cluster: SolanaCluster) -> AsyncIterator[AsyncClient]:
    shared = _shared_client.get()
    if shared is not None:
        yield shared
    else:
        async with rpc_client(cluster) as client:
            yield client


# The fee payer, loaded once per flow run rather than once per batch.
_payers: dict[tuple[str | None, str], Keypair] = {}


async def _payer(block: str) -> Keypair:
    key = (current_run_id(), block)
    if key not in _payers:
        _payers[key] = (await load_block(SolanaKeypair, block)).keypair()
    return _payers[key]


@task(name="start-migration", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def start_migration(**fields: object) -> MigrationRunRecord:
    return migrations.start_migration(
        records_engine(),
        flow_run_id=current_run_id(),
        **fields,  # type: ignore[arg-type]
    )


@task(name="finish-migration", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def finish_migration(
    migration_id: int, status: str, details: dict[str, object] | None = None
) -> MigrationRunRecord:
    return migrations.finish_migration(
        records_engine(), migration_id, status, details=details, flow_run_id=current_run_id()
    )


def account_states(migration_id: int) -> dict[str, AccountState]:
    return migrations.account_states(records_engine(), migration_id)


@task(name="discover-accounts", cache_policy=NO_CACHE, **READ_RETRIES)
async def discover_accounts(
    cluster: SolanaCluster,
    program_id: str,
    migrator_name: str,
    version: int,
    shard: tuple[int, int] | None = None,
) -> AccountKeys:
    """Keys of the program's accounts at layout ``version`` (of ``shard`` only, if given):
    getProgramAccounts with the migrator's filters and a zero-length dataSlice (keys, no
    data: the batches fetch it 100 at a time), its answer scanned as it streams in."""
    migrator = get_migrator(migrator_name)
    async with rpc_client(cluster) as client:
        keys = await stream_program_keys(
            client, Pubkey.from_string(program_id), migrator.select(version)
        )
    if shard is not None:
        index, count = shard
        keys = AccountKeys(k for k in keys if shard_of_key(k, count) == index)
    get_run_logger().info(
        "%d accounts of %s at layout v%d%s",
        len(keys),
        program_id,
        version,
        "" if shard is None else f" in shard {shard[0]}/{shard[1]}",
    )
    return keys


# Each entry of a keys-only getProgramAccounts answer names its key once, here.
_PUBKEY = re.compile(rb'"pubkey"\s*:\s*"([1-9A-HJ-NP-Za-km-z]{32,44})"')
# Answers this small are parsed whole (an RPC error is one of them).
_SMALL_ANSWER = 64 * 1024


async def stream_program_keys(
    client: AsyncClient, program: Pubkey, filters: Sequence[object]
) -> AccountKeys:
    """The keys of ``program``'s accounts matching ``filters``, without their data.

    The answer is read as a stream and only the keys are kept (32 bytes each): a million
    accounts never sit in memory as a parsed JSON document."""
    body = client._get_program_accounts_body(  # solana-py's own request, as it would send
        pubkey=program,
        commitment=Confirmed,
        encoding="base64",
        data_slice=DataSliceOpts(offset=0, length=0),
        filters=filters,  # type: ignore[arg-type]
    ).to_json()
    provider = client._provider
    keys: list[bytes] = []
    head = bytearray()
    size = 0
    tail = b""
    async with provider.session.stream(
        "POST",
        provider.endpoint_uri,
        content=body,
        headers={"Content-Type": "application/json"},
    ) as response:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size <= _SMALL_ANSWER:
                head += chunk
            text = tail + chunk
            last = 0
            for match in _PUBKEY.finditer(text):
                keys.append(bytes(Pubkey.from_string(match.group(1).decode())))
                last = match.end()
            # Keep what may be the start of a key cut by the chunk's end.
            tail = text[max(last, len(text) - 64) :]
    if size <= _SMALL_ANSWER:
        answer = json.loads(bytes(head))
        if "error" in answer or not isinstance(answer.get("result"), list):
            error = answer.get("error") or {}
            raise ChainError(
                f"RPC getProgramAccounts of {program} refused: "
                f"{error.get('message', 'no result') if isinstance(error, dict) else error}"
            )
    return AccountKeys(keys)


@task(
    name="migrate-batch",
    task_run_name="migrate-batch-{index}",
    cache_policy=NO_CACHE,
    **WRITE_RETRIES,
)
async def migrate_batch(
    index: int,
    cluster: SolanaCluster,
    program_id: str,
    migration_id: int,
    migrator_name: str,
    addresses: list[str],
    fee_payer_block: str,
    per_transaction: int,
    retry_failed: bool = False,
) -> BatchResult:
    """Snapshot, migrate and verify up to 1,000 accounts; record each one's outcome.

    Reads the accounts first: a new one is snapshotted (committed) before anything is
    sent for it; one already on the new layout is not sent again; one that failed before
    is left alone unless ``retry_failed``. Migrates are packed ``per_transaction`` per
    transaction, sent concurrently under one blockhash; a refused transaction is split
    into one per account, so only the failing account fails. The migrated accounts are
    then read back and checked against their snapshots, and the batch records each one
    as verified or failed in one transaction.
    """
    if len(addresses) > BATCH_LIMIT:
        raise ValueError(f"a batch is at most {BATCH_LIMIT} accounts, got {len(addresses)}")
    engine = records_engine()
    run_id = current_run_id()
    migrator = get_migrator(migrator_name)
    # Records calls run in a thread: a commit must not stall the other batches' RPC.
    states = await asyncio.to_thread(migrations.account_states, engine, migration_id, addresses)
    payer = await _payer(fee_payer_block)
    program = Pubkey.from_string(program_id)
    outcomes: list[AccountOutcome] = []
    to_send: list[str] = []
    to_verify: list[str] = []
    skipped = 0
    options = send_options(cluster)
    journal = MigrationJournal(migration_id, addresses)
    async with _rpc(cluster) as client:
        # What an earlier attempt sent for these accounts lands (or expires) before the
        # chain is read: an in-flight migrate is found on chain, never sent twice.
        await send.settle_unsettled(client, journal, options)
        datas = await fetch_accounts(client, addresses)
        fresh = {
            address: data
            for address, data in zip(addresses, datas, strict=True)
            if address not in states
            and data is not None
            and migrator.layout_version(data) == migrator.source_version
        }
        await asyncio.to_thread(
            migrations.record_snapshots,
            engine,
            migration_id,
            [Snapshot(a, migrator.source_version, d) for a, d in fresh.items()],
            flow_run_id=run_id,
        )
        for address, data in zip(addresses, datas, strict=True):
            state = states.get(address)
            if state is None and address not in fresh:
                skipped += 1  # neither recorded nor on the source layout: not ours
                continue
            version = None if data is None else migrator.layout_version(data)
            if data is None:
                outcomes.append(AccountOutcome(address, "failed", "the account no longer exists"))
            elif version == migrator.target_version:
                if state is not None and state.status in ("pending", "failed", "migrated"):
                    to_verify.append(address)  # migrated by an earlier, interrupted run
            elif version != migrator.source_version:
                outcomes.append(
                    AccountOutcome(address, "failed", f"unexpected layout v{version} on chain")
                )
            elif state is not None and state.status == "failed" and not retry_failed:
                skipped += 1
            else:
                to_send.append(address)
        found_migrated = len(to_verify)
        transactions = 0
        if to_send:
            # Checked per batch, right before sending: an engaged switch stops a running
            # migration within one batch.
            await asyncio.to_thread(
                ensure_released, cluster.cluster, program_id, "account migration"
            )
            sent, transactions = await send_migrates(
                client,
                migrator,
                program,
                payer,
                to_send,
                per_transaction,
                options=options,
                journal=journal,
            )
            signatures = {o.address: o.signature for o in sent}
            outcomes += [o for o in sent if o.status == "failed"]
            to_verify += [o.address for o in sent if o.status == "migrated"]
        else:
            signatures = {}
        # Found migrated: the journal names the transaction of an earlier attempt that
        # did it; an account no journal row covers was migrated by someone else.
        earlier = await asyncio.to_thread(journal.landed_signatures) if found_migrated else {}
        if to_verify:
            current = await fetch_accounts(client, to_verify)
    mismatches: dict[str, str] = {}
    if to_verify:
        checking = set(to_verify)
        known = {a: data for a, data in fresh.items() if a in checking}
        missing = [a for a in to_verify if a not in known]
        if missing:
            known.update(
                await asyncio.to_thread(migrations.snapshots, engine, migration_id, missing)
            )
        for address, data in zip(to_verify, current, strict=True):
            problems = migrator.verify(known[address], data)
            signature = signatures.get(address) or earlier.get(address)
            # An earlier attempt's migrate counts as sent once, when first recorded.
            sent = address in signatures or (
                signature is not None and signature != _recorded_signature(states, address)
            )
            if problems:
                error = "verification: " + "; ".join(problems)
                mismatches[address] = "; ".join(problems)
                outcomes.append(AccountOutcome(address, "failed", error, signature, sent))
            else:
                outcomes.append(AccountOutcome(address, "verified", None, signature, sent))
    await asyncio.to_thread(
        migrations.record_outcomes, engine, migration_id, outcomes, flow_run_id=run_id
    )
    failed = {o.address: o.error or "" for o in outcomes if o.status == "failed"}
    return BatchResult(
        accounts=len(addresses),
        migrated=sum(1 for a in to_verify if a in signatures),
        found_migrated=found_migrated,
        skipped=skipped,
        transactions=transactions,
        failed=failed,
        mismatches=mismatches,
    )


@task(
    name="verify-batch",
    task_run_name="verify-batch-{index}",
    cache_policy=NO_CACHE,
    **READ_RETRIES,
)
async def verify_batch(
    index: int,
    cluster: SolanaCluster,
    migration_id: int,
    migrator_name: str,
    addresses: list[str],
) -> dict[str, str]:
    """Decode each migrated account with the new layout and compare every preserved field
    with its snapshot; records verified or failed, returns the mismatches."""
    engine = records_engine()
    migrator = get_migrator(migrator_name)
    snapshots = await asyncio.to_thread(migrations.snapshots, engine, migration_id, addresses)
    async with _rpc(cluster) as client:
        datas = await fetch_accounts(client, addresses)
    outcomes: list[AccountOutcome] = []
    mismatches: dict[str, str] = {}
    for address, data in zip(addresses, datas, strict=True):
        problems = migrator.verify(snapshots[address], data)
        if problems:
            mismatches[address] = "; ".join(problems)
            outcomes.append(
                AccountOutcome(address, "failed", "verification: " + mismatches[address])
            )
        else:
            outcomes.append(AccountOutcome(address, "verified"))
    migrations.record_outcomes(engine, migration_id, outcomes, flow_run_id=current_run_id())
    return mismatches


async def fetch_accounts(client: AsyncClient, addresses: Sequence[str]) -> list[bytes | None]:
    """The data of ``addresses`` (None for a missing one): 100 per getMultipleAccounts,
    in one batch request."""
    return await rpc.fetch_accounts_data(client, [Pubkey.from_string(a) for a in addresses])


async def send_migrates(
    client: AsyncClient,
    migrator: AccountMigrator,
    program: Pubkey,
    payer: Keypair,
    addresses: Sequence[str],
    per_transaction: int,
    *,
    options: SendOptions | None = None,
    journal: MigrationJournal | None = None,
) -> tuple[list[AccountOutcome], int]:
    """Send the migrates of ``addresses``, ``per_transaction`` per transaction, through
    ``programs.send`` (signatures written ahead to ``journal``); a refused transaction is
    retried one account per transaction. Returns the outcomes and how many transactions
    were sent."""
    chunks = [
        list(addresses[i : i + per_transaction]) for i in range(0, len(addresses), per_transaction)
    ]
    results = await _send_chunks(client, migrator, program, payer, chunks, options, journal)
    outcomes: list[AccountOutcome] = []
    isolate: list[list[str]] = []
    for chunk, signature, error in results:
        if error is None:
            outcomes += [
                AccountOutcome(a, "migrated", signature=signature, sent=True) for a in chunk
            ]
        elif len(chunk) > 1:
            isolate += [[a] for a in chunk]
        else:
            outcomes.append(AccountOutcome(chunk[0], "failed", error, sent=True))
    sent = len(chunks)
    if isolate:
        for chunk, signature, error in await _send_chunks(
            client, migrator, program, payer, isolate, options, journal
        ):
            outcomes.append(
                AccountOutcome(chunk[0], "migrated", signature=signature, sent=True)
                if error is None
                else AccountOutcome(chunk[0], "failed", error, sent=True)
            )
        sent += len(isolate)
    return outcomes, sent


async def _send_chunks(
    client: AsyncClient,
    migrator: AccountMigrator,
    program: Pubkey,
    payer: Keypair,
    chunks: Sequence[list[str]],
    options: SendOptions | None,
    journal: MigrationJournal | None,
) -> list[tuple[list[str], str | None, str | None]]:
    """One transaction per chunk, under one blockhash, sent and confirmed together
    (one simulation, one fee read): (chunk, signature, error) each. No preflight: the
    simulation ran the largest chunk, and a chunk that still fails lands failed, its
    accounts then sent one per transaction (each simulated: a refusal names the logs)."""
    sets = [
        migrator.migrate_instructions(
            program, [Pubkey.from_string(a) for a in chunk], payer.pubkey()
        )
        for chunk in chunks
    ]
    try:
        outcomes = await send.send_batch(
            client,
            sets,
            payer,
            options=options,
            journal=None if journal is None else journal.covering(chunks),
            preflight=False,
            send_gate=_send_gate.get(),
        )
    except TransactionFailed as refusal:
        # The batch's one simulation refused, before anything was signed: of which chunk
        # is unknown, so each is simulated and sent on its own.
        if len(chunks) == 1:
            return [(chunks[0], None, migrator.describe_failure(str(refusal), refusal.logs))]
        alone = await asyncio.gather(
            *(
                _send_chunks(client, migrator, program, payer, [chunk], options, journal)
                for chunk in chunks
            )
        )
        return [result for results in alone for result in results]
    return [
        (chunk, o.signature, None)
        if o.landed
        else (chunk, None, migrator.describe_failure(o.error or "failed", o.logs))
        for chunk, o in zip(chunks, outcomes, strict=True)
    ]


def _recorded_signature(states: dict[str, AccountState], address: str) -> str | None:
    state = states.get(address)
    return None if state is None else state.signature


__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_BATCH_SIZE",
    "FETCH_LIMIT",
    "BatchResult",
    "MigrationJournal",
    "account_states",
    "discover_accounts",
    "fetch_accounts",
    "finish_migration",
    "migrate_batch",
    "migration_purpose",
    "send_migrates",
    "start_migration",
    "verify_batch",
]

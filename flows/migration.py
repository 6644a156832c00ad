"""Runbook: migrate a program's accounts to the layout of its new version.

Seed 000's "Starting a Migration" and seed 003's "Complete Account Migration Logic":

1. Check the kill switch, and that the program runs the binary that knows the new layout.
2. Record the migration (a rerun resumes the same one).
3. Discover the accounts still on the old layout (getProgramAccounts with the migrator's
   filters).
4. Migrate them in batches (500 accounts by default, read 100 per getMultipleAccounts),
   a bounded number of batches at a time: each batch snapshots its accounts into the
   records before it sends anything, packs the program's migrate instructions many per
   transaction, reads the accounts back, checks every preserved field against the
   snapshot, and records each account as verified or failed (with the error). A progress
   artifact follows.
5. Verify what an interrupted run left migrated but unchecked (everything, with
   ``reverify``).
6. Publish a report and a table of failures; failures or mismatches fail the run.

Resumable: kill the process at any point and run it again. The records are the
checkpoint, the chain the truth: the migrates a killed run sent (their signatures were
written ahead) are settled first, accounts already on the new layout are recorded as
migrated, with the signature that migrated them, without sending anything, accounts
snapshotted but not migrated are migrated, and none is skipped. Accounts that failed
are retried only with ``retry_failed``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Annotated, Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.utilities.annotations import quote
from pydantic import Field
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import HashMismatch, MigrationError
from core.idempotency import idempotency_key
from core.keys import parse_pubkey, parse_sha256
from domain.forms import titled_form
from domain.migration import AccountKeys, outcome, parse_shard
from domain.report import fields_table, linked
from programs.plugin import get_migrator
from store.records import migrations
from store.records.migrations import MigrationRunRecord
from tasks import chain, kill_switch
from tasks import migration as tasks
from tasks.migration import BATCH_LIMIT, DEFAULT_BATCH_SIZE, FETCH_LIMIT, BatchResult
from tasks.records import records_engine

T = TypeVar("T")
R = TypeVar("R")
# Failed accounts listed in the failures artifact; the records hold them all.
FAILURES_SHOWN = 1000


def migration_key(
    cluster: str,
    program_id: str,
    migrator: str,
    source: int,
    target: int,
    shard: tuple[int, int] | None = None,
) -> str:
    """Identifies one migration, so a rerun (after a crash, or to retry) resumes it.
    A shard is its own migration: each resumes on its own."""
    parts = [cluster, program_id, migrator, f"v{source}->v{target}"]
    if shard is not None:
        parts.append(f"shard-{shard[0]}-of-{shard[1]}")
    return idempotency_key("migration", *parts)


@flow(name="account-migration", persist_result=False)
@titled_form
async def migrate_accounts(
    program_id: str,
    migrator: str = "demo_vault",
    expected_program_sha256: str | None = None,
    retry_failed: bool = False,
    reverify: bool = False,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8,
    batch_size: Annotated[int, Field(ge=1, le=BATCH_LIMIT)] = DEFAULT_BATCH_SIZE,
    accounts_per_transaction: Annotated[int | None, Field(ge=1)] = None,
    cluster_block: str = "localnet",
    fee_payer_block: str = "localnet-fee-payer",
    shard: str | None = None,
) -> dict[str, Any]:
    """Migrate a program's accounts to its new layout, in batches, verified and resumable.

    Args:
        program_id: The program whose accounts to migrate (base58 address).
        migrator: A registered AccountMigrator (programs/plugin.py) or
            'package.module:ClassName' from a module listed in the worker's
            RUNBOOKS_MIGRATOR_MODULES.
        expected_program_sha256: The binary that knows the new layout; the run refuses to
            start while the program holds another one.
        retry_failed: Try accounts that failed in an earlier run again.
        reverify: Check accounts verified by an earlier run against their snapshots too.
        concurrency: How many batches run at once.
        batch_size: Accounts read and migrated per batch (one task each; up to 1,000).
        accounts_per_transaction: At most this many migrates per transaction; empty: as
            many as fit in 1,232 bytes and the compute limit.
        cluster_block: The SolanaCluster block of the cluster to migrate on.
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        shard: "i/N": migrate only the accounts of shard i of N (by the first 8 bytes of
            their key); each shard is its own, resumable migration. Empty: all accounts.
    """
    started = time.monotonic()
    logger = get_run_logger()
    shard_of = parse_shard(shard)
    program_key = parse_pubkey(program_id, "program id")
    if expected_program_sha256:
        expected_program_sha256 = parse_sha256(expected_program_sha256, "expected_program_sha256")
    m = get_migrator(migrator)
    cluster = await load_block(SolanaCluster, cluster_block)
    kill_switch.check_kill_switch(cluster.cluster, program_id, "account migration")

    # 1. The binary that writes the new layout must be live.
    program = await chain.read_program(cluster, program_id)
    if expected_program_sha256 and program.sha256 != expected_program_sha256.strip().lower():
        raise HashMismatch(
            f"program {program_id} (it must run the binary that knows layout "
            f"v{m.target_version} before its accounts migrate)",
            expected_program_sha256,
            program.sha256,
        )
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair().pubkey()
    fits = m.accounts_per_transaction(program_key, payer)
    per_transaction = min(accounts_per_transaction or fits, fits)

    # 2. Discover (reads only: keys, no data), then record (or resume) the migration.
    key = migration_key(
        cluster.cluster, program_id, m.name, m.source_version, m.target_version, shard_of
    )
    discovered = await tasks.discover_accounts(
        cluster, program_id, m.name, m.source_version, shard_of
    )
    if not discovered and migrations.get_migration_by_key(records_engine(), key) is None:
        # Nothing to migrate and never migrated: a mistyped program id or the wrong
        # migrator looks exactly like this, so it is not reported as a success.
        raise MigrationError(
            f"no accounts of program {program_id} on layout v{m.source_version} of "
            f"migrator {m.name!r} were found on {cluster.cluster}"
            + ("" if shard_of is None else f" in shard {shard}")
            + ", and no earlier migration of them is recorded: check the program id, the "
            "migrator and the cluster block; nothing was recorded"
        )
    run = tasks.start_migration(
        key=key,
        cluster=cluster.cluster,
        program_id=program_id,
        migrator=m.name,
        from_version=m.source_version,
        to_version=m.target_version,
        program_hash=program.sha256,
    )
    logger.info(
        "migration #%d: %d accounts on layout v%d, %d per transaction",
        run.id,
        len(discovered),
        m.source_version,
        per_transaction,
    )

    # 3-4. Migrate as a pipeline: batches are cut from the key list (then from the records'
    # pending accounts) as earlier ones finish, at most ``concurrency`` in flight; each
    # batch reads its own accounts' states. Memory holds the keys and the batches in
    # flight, whatever the account count.
    # Whole transactions per batch: 483 accounts (23 x 21) beat 500 (23 x 21 + 17).
    if batch_size >= per_transaction:
        batch_size -= batch_size % per_transaction
    progress = await Progress.create(run, len(discovered))
    totals = Totals()

    async def done(result: BatchResult) -> None:
        totals.add(result)
        await progress.advance(result.accounts)

    resumed = _recorded(
        run.id,
        ("pending", "failed") if retry_failed else ("pending",),
        batch_size,
        discovered,
        progress,
    )
    async with tasks.shared_rpc(cluster):
        try:
            await pipeline(
                _chain(discovered.batches(batch_size), resumed),
                concurrency,
                lambda i, batch: tasks.migrate_batch(
                    i,
                    cluster,
                    program_id,
                    run.id,
                    m.name,
                    # Not introspected by Prefect (it would visit every address).
                    quote(batch),
                    fee_payer_block,
                    per_transaction,
                    retry_failed,
                ),
                done,
            )
        except BaseException as exc:
            tasks.finish_migration(run.id, "incomplete", {"error": str(exc)[:500]})
            raise

        # 5. Batches verify what they migrate; here what an interrupted run left migrated
        # but unverified (and, with ``reverify``, everything verified before), a page of
        # the records at a time.
        wanted = ("migrated", "verified") if reverify else ("migrated",)
        mismatches = totals.mismatches
        verified_again = 0

        async def checked(found: dict[str, str]) -> None:
            mismatches.update(found)

        async def to_verify() -> AsyncIterator[list[str]]:
            nonlocal verified_again
            async for page in _recorded(run.id, wanted, FETCH_LIMIT):
                verified_again += len(page)
                yield page

        await pipeline(
            to_verify(),
            concurrency,
            lambda i, page: tasks.verify_batch(i, cluster, run.id, m.name, quote(page)),
            checked,
        )
    await progress.finish()

    # 6. Report.
    engine = records_engine()
    counts = migrations.migration_counts(engine, run.id)
    failures = migrations.failed_accounts(engine, run.id, limit=FAILURES_SHOWN)
    seconds = time.monotonic() - started
    worked_on = totals.accounts - totals.skipped
    summary: dict[str, Any] = {
        "migration_id": run.id,
        "program_id": program_id,
        "migrator": m.name,
        "shard": None if shard_of is None else f"{shard_of[0]}/{shard_of[1]}",
        "discovered": len(discovered),
        "worked_on": worked_on,
        "migrated_now": totals.migrated,
        "found_migrated": totals.found_migrated,
        "transactions": totals.transactions,
        "verified_again": verified_again,
        "accounts": counts,
        "seconds": round(seconds, 2),
        "accounts_per_second": round(worked_on / seconds, 1) if seconds else None,
    }
    await publish(run, summary, failures, cluster)
    status, error = outcome(
        run.id, mismatches, failures, counts["pending"], failed=counts["failed"]
    )
    tasks.finish_migration(run.id, status, {"summary": summary})
    if error is not None:
        raise error
    return summary


async def bounded(
    jobs: Sequence[Awaitable[T]],
    limit: int,
    on_done: Callable[[T], Awaitable[None]] | None = None,
) -> list[T]:
    """Await ``jobs`` at most ``limit`` at a time; the first failure cancels the rest."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        try:
            async with gate:
                result = await job
        except asyncio.CancelledError:
            if inspect.iscoroutine(job):
                job.close()  # never started: no "never awaited" warning
            raise
        if on_done is not None:
            await on_done(result)
        return result

    pending = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*pending))
    except BaseException:
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        raise


async def pipeline(
    items: AsyncIterator[T] | Iterable[T],
    limit: int,
    work: Callable[[int, T], Awaitable[R]],
    on_done: Callable[[R], Awaitable[None]],
) -> int:
    """Run ``work(i, item)`` for each item, at most ``limit`` at once, taking the next item
    only when one finishes (never a list of every job); the first failure cancels the
    rest. Returns how many items were worked on."""
    running: set[asyncio.Future[R]] = set()

    async def reap(block: bool) -> None:
        nonlocal running
        if not running:
            return
        finished, running = await asyncio.wait(
            running, return_when=asyncio.FIRST_COMPLETED if block else asyncio.ALL_COMPLETED
        )
        for future in finished:
            await on_done(future.result())  # raises the first failure

    async def each() -> AsyncIterator[T]:
        if isinstance(items, AsyncIterator):
            async for item in items:
                yield item
        else:
            for item in items:
                yield item

    count = 0
    try:
        async for item in each():
            while len(running) >= limit:
                await reap(True)
            running.add(asyncio.ensure_future(work(count, item)))
            count += 1
        while running:
            await reap(True)
    except BaseException:
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    return count


class Totals:
    """What the batches did, summed as they finish (no per-batch results are kept)."""

    def __init__(self) -> None:
        self.accounts = self.migrated = self.found_migrated = 0
        self.skipped = self.transactions = 0
        self.mismatches: dict[str, str] = {}

    def add(self, result: BatchResult) -> None:
        self.accounts += result.accounts
        self.migrated += result.migrated
        self.found_migrated += result.found_migrated
        self.skipped += result.skipped
        self.transactions += result.transactions
        self.mismatches.update(result.mismatches)


async def _chain(*sources: Iterable[T] | AsyncIterator[T]) -> AsyncIterator[T]:
    for source in sources:
        if isinstance(source, AsyncIterator):
            async for item in source:
                yield item
        else:
            for item in source:
                yield item


async def _recorded(
    migration_id: int,
    statuses: Sequence[str],
    size: int,
    skip: AccountKeys | None = None,
    progress: Progress | None = None,
) -> AsyncIterator[list[str]]:
    """The migration's recorded accounts in ``statuses``, a page at a time, by address,
    leaving out those in ``skip`` (the discovered ones: already worked on)."""
    after: str | None = None
    while True:
        page = await asyncio.to_thread(
            migrations.account_addresses,
            records_engine(),
            migration_id,
            statuses,
            after=after,
            limit=size,
        )
        if not page:
            return
        after = page[-1]
        if skip is not None:
            page = [a for a in page if bytes(Pubkey.from_string(a)) not in skip]
        if page:
            if progress is not None:
                progress.total += len(page)
            yield page


class Progress:
    """A progress artifact, updated at most every percent."""

    def __init__(self, artifact_id: Any, total: int) -> None:
        self.artifact_id = artifact_id
        self.total = total
        self.done = 0
        self.shown = 0.0

    @classmethod
    async def create(cls, run: MigrationRunRecord, total: int) -> Progress:
        artifact_id = await acreate_progress_artifact(
            progress=0.0 if total else 100.0,
            key=f"migration-{run.id}-progress",
            description=f"Migration #{run.id} of {run.program_id}: {total} accounts",
        )
        return cls(artifact_id, total)

    async def advance(self, accounts: int) -> None:
        self.done += accounts
        percent = 100.0 * self.done / self.total if self.total else 100.0
        if percent - self.shown >= 1.0:
            self.shown = percent
            await aupdate_progress_artifact(self.artifact_id, min(percent, 100.0))

    async def finish(self) -> None:
        if self.shown < 100.0:
            self.shown = 100.0
            await aupdate_progress_artifact(self.artifact_id, 100.0)


async def publish(
    run: MigrationRunRecord,
    summary: dict[str, Any],
    failures: Sequence[migrations.AccountState],
    cluster: SolanaCluster,
) -> None:
    counts = summary["accounts"]
    link = cluster.explorer_link(run.program_id)
    await acreate_markdown_artifact(
        key=f"migration-{run.id}-report",
        description=f"Migration #{run.id} of {run.program_id}",
        markdown="\n".join(
            [
                f"# Migration #{run.id}: {run.migrator} v{run.from_version} -> v{run.to_version}",
                "",
                *fields_table(
                    [
                        ("Cluster", cluster.cluster),
                        ("Program", linked(run.program_id, link)),
                        (f"Binary that writes v{run.to_version}", f"`{run.program_hash}`"),
                        (
                            f"On v{run.from_version} when this run started",
                            f"{summary['discovered']}",
                        ),
                        (
                            "Migrated by this run",
                            f"{summary['migrated_now']} ({summary['transactions']} transactions)",
                        ),
                        ("Found already migrated", summary["found_migrated"]),
                        ("Verified", counts["verified"]),
                        ("Migrated, not verified", counts["migrated"]),
                        ("Pending", counts["pending"]),
                        ("Failed", counts["failed"]),
                        (
                            "Seconds",
                            f"{summary['seconds']} ({summary['accounts_per_second']} accounts/s)",
                        ),
                    ]
                ),
            ]
        ),
    )
    if failures:
        await acreate_table_artifact(
            key=f"migration-{run.id}-failures",
            description=f"Migration #{run.id}: {len(failures)} failed accounts"
            + (f" (first {FAILURES_SHOWN})" if len(failures) > FAILURES_SHOWN else ""),
            table=[
                {"account": f.address, "attempts": f.attempts, "error": f.error}
                for f in failures[:FAILURES_SHOWN]
            ],
        )


__all__ = ["bounded", "migrate_accounts", "migration_key", "pipeline"]

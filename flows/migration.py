"""Runbook: migrate a program's accounts to the layout of its new version.

Seed 000's "Starting a Migration" and seed 003's "Complete Account Migration Logic":

1. Check the kill switch, and that the program runs the binary that knows the new layout.
2. Record the migration (a rerun resumes the same one).
3. Discover the accounts still on the old layout (getProgramAccounts with the migrator's
   filters).
4. Migrate them in batches of up to 100 (one getMultipleAccounts each), a bounded number
   of batches at a time: each batch snapshots its accounts into the records before it
   sends anything, packs the program's migrate instructions many per transaction, reads
   the accounts back, checks every preserved field against the snapshot, and records
   each account as verified or failed (with the error). A progress artifact follows.
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

from prefect import flow, get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from pydantic import Field

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import HashMismatch, MigrationError
from core.idempotency import idempotency_key
from core.keys import parse_pubkey, parse_sha256
from domain.migration import in_shard, outcome, parse_shard, plan
from domain.report import fields_table, linked
from programs.plugin import get_migrator
from store.records import migrations
from store.records.migrations import MigrationRunRecord
from tasks import chain, kill_switch
from tasks import migration as tasks
from tasks.migration import FETCH_LIMIT, BatchResult
from tasks.records import records_engine

T = TypeVar("T")
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
    """Identifies one migration (or one shard of it), so a rerun (after a crash, or to
    retry) resumes it."""
    parts = [cluster, program_id, migrator, f"v{source}->v{target}"]
    if shard is not None:
        parts.append(f"shard-{shard[0]}-of-{shard[1]}")
    return idempotency_key("migration", *parts)


@flow(name="account-migration", persist_result=False)
async def migrate_accounts(
    program_id: str,
    migrator: str = "demo_vault",
    expected_program_sha256: str | None = None,
    retry_failed: bool = False,
    reverify: bool = False,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8,
    batch_size: Annotated[int, Field(ge=1, le=FETCH_LIMIT)] = FETCH_LIMIT,
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
        batch_size: Accounts read and migrated per batch.
        accounts_per_transaction: At most this many migrates per transaction; empty: as
            many as fit in 1,232 bytes and the compute limit.
        cluster_block: The SolanaCluster block of the cluster to migrate on.
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        shard: "i/N": only the accounts of shard i of N (flows/migration_fanout.py runs
            the N shards on workers); each shard is its own migration record.
    """
    started = time.monotonic()
    logger = get_run_logger()
    program_key = parse_pubkey(program_id, "program id")
    part = parse_shard(shard)
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

    # 2. Discover (reads only), then record (or resume) the migration.
    key = migration_key(
        cluster.cluster, program_id, m.name, m.source_version, m.target_version, part
    )
    discovered = await tasks.discover_accounts(cluster, program_id, m.name, m.source_version)
    if part is not None:
        discovered = [a for a in discovered if in_shard(a, *part)]
    if not discovered and migrations.get_migration_by_key(records_engine(), key) is None:
        # Nothing to migrate and never migrated: a mistyped program id or the wrong
        # migrator looks exactly like this, so it is not reported as a success.
        raise MigrationError(
            f"no accounts of program {program_id} on layout v{m.source_version} of "
            f"migrator {m.name!r} were found on {cluster.cluster}, and no earlier migration "
            "of them is recorded: check the program id, the migrator and the cluster block; "
            "nothing was recorded"
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

    # 3. Plan against the records.
    work = plan(discovered, tasks.account_states(run.id), retry_failed=retry_failed)
    logger.info(
        "migration #%d: %d accounts to work on (%d on layout v%d), %d per transaction",
        run.id,
        len(work),
        len(discovered),
        m.source_version,
        per_transaction,
    )

    # 4-5. Migrate, then verify, a bounded number of batches at a time, over one client.
    progress = await Progress.create(run, len(work))
    # Whole transactions per batch: 84 accounts (4 x 21) beat 100 (4 x 21 + 16).
    if batch_size >= per_transaction:
        batch_size -= batch_size % per_transaction
    batches = [work[i : i + batch_size] for i in range(0, len(work), batch_size)]
    async with tasks.shared_rpc(cluster):
        try:
            results: list[BatchResult] = await bounded(
                [
                    tasks.migrate_batch(
                        i,
                        cluster,
                        program_id,
                        run.id,
                        m.name,
                        batch,
                        fee_payer_block,
                        per_transaction,
                        retry_failed,
                    )
                    for i, batch in enumerate(batches)
                ],
                concurrency,
                on_done=lambda r: progress.advance(r.accounts),
            )
        except BaseException as exc:
            tasks.finish_migration(run.id, "incomplete", {"error": str(exc)[:500]})
            raise

        # Batches verify what they migrate; here what an interrupted run left migrated but
        # unverified (and, with ``reverify``, everything verified before).
        wanted = {"migrated", "verified"} if reverify else {"migrated"}
        states = tasks.account_states(run.id)
        to_verify = sorted(a for a, s in states.items() if s.status in wanted)
        mismatches = {a: why for r in results for a, why in r.mismatches.items()}
        for found in await bounded(
            [
                tasks.verify_batch(i, cluster, run.id, m.name, to_verify[at : at + FETCH_LIMIT])
                for i, at in enumerate(range(0, len(to_verify), FETCH_LIMIT))
            ],
            concurrency,
        ):
            mismatches.update(found)
    await progress.finish()

    # 6. Report.
    engine = records_engine()
    counts = migrations.migration_counts(engine, run.id)
    failures = migrations.failed_accounts(engine, run.id)
    seconds = time.monotonic() - started
    summary: dict[str, Any] = {
        "migration_id": run.id,
        "program_id": program_id,
        "migrator": m.name,
        "discovered": len(discovered),
        "worked_on": len(work),
        "migrated_now": sum(r.migrated for r in results),
        "found_migrated": sum(r.found_migrated for r in results),
        "transactions": sum(r.transactions for r in results),
        "verified_again": len(to_verify),
        "accounts": counts,
        "seconds": round(seconds, 2),
        "accounts_per_second": round(len(work) / seconds, 1) if seconds else None,
    }
    await publish(run, summary, failures, cluster)
    status, error = outcome(run.id, mismatches, failures, counts["pending"])
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


__all__ = ["bounded", "migrate_accounts", "migration_key"]

"""Tasks of the backup and restore runbooks.

Database URLs never travel as task parameters (Prefect would track them): a task gets a
``RecordsDatabase`` block name, or none for this process's ``DATABASE_URL``, and
resolves the URL itself.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.database import RecordsDatabase
from blocks.programs import ManagedProgram
from core.errors import AccountNotFound, BackupError
from domain.backup import SetAge, plan_retention
from programs import loader, rpc
from store import backup, db
from store.backup import DatabaseDump, Manifest, ProgramBinary
from store.records import backups
from tasks.chain import READ_RETRIES, rpc_client
from tasks.records import current_run_id, records_engine


async def database_url(block: str | None) -> str:
    """The URL of the database a block names (``DATABASE_URL`` when None)."""
    if block is None:
        return db.database_url()
    return (await load_block(RecordsDatabase, block)).url.get_secret_value()


@task(name="dump-records", retries=1, retry_delay_seconds=5)
async def dump_records(database_block: str | None, directory: Path) -> DatabaseDump:
    dump = backup.dump_database(await database_url(database_block), directory)
    get_run_logger().info(
        "dumped %d tables (%d rows) into %s: %d bytes, sha256 %s",
        len(dump.tables),
        sum(dump.tables.values()),
        dump.file,
        dump.bytes,
        dump.sha256,
    )
    return dump


@task(name="verify-records-dump")
async def verify_dump(
    database_block: str | None, directory: Path, dump: DatabaseDump
) -> dict[str, int]:
    """Restore into a scratch database and compare every table's row count."""
    counts = backup.verify_dump(directory, dump, await database_url(database_block))
    get_run_logger().info("restored into a scratch database: %d tables match", len(counts))
    return counts


@task(name="save-program-binaries", **READ_RETRIES)
async def save_programs(
    cluster: SolanaCluster, programs: list[ManagedProgram], directory: Path
) -> list[ProgramBinary]:
    """Each program's ProgramData bytes and hashes, re-checked against the chain's hash."""
    saved = []
    async with rpc_client(cluster) as client:
        for program in programs:
            key = Pubkey.from_string(program.program_id)
            info = await rpc.read_program(client, key)
            account = await rpc.fetch_account(client, loader.programdata_address(key))
            if account is None:
                raise AccountNotFound(f"ProgramData of {program.program_id} disappeared")
            entry = backup.write_program(
                directory,
                program_id=program.program_id,
                name=program.name,
                code=loader.program_bytes(bytes(account.data)),
                slot=info.slot,
                authority=info.authority,
            )
            if entry.verifiable_sha256 != info.sha256:
                # The account changed between the two reads: the next run takes it again.
                raise BackupError(
                    f"{program.program_id} changed while it was read; run the backup again"
                )
            saved.append(entry)
    return saved


@task(name="record-backup", retries=2, retry_delay_seconds=1)
def record_backup(root: Path, manifest: Manifest) -> backups.BackupRecord | None:
    """Record the set in the records database (skipped, with a warning, if it is down)."""
    dump = manifest.records
    if dump is None:
        return None
    return backups.record_backup(
        records_engine(),
        name=manifest.name,
        directory=str(root / manifest.name),
        backend=dump.backend,
        records_file=dump.file,
        records_sha256=dump.sha256,
        table_counts=dump.tables,
        programs={
            p.program_id: {
                "sha256": p.sha256,
                "verifiable_sha256": p.verifiable_sha256,
                "slot": p.slot,
            }
            for p in manifest.programs
        },
        status="verified" if manifest.status == "verified" else "failed",
        detail=manifest.detail,
        created_at=manifest.created,
        verified_at=None if manifest.verified_at is None else _parse(manifest.verified_at),
        flow_run_id=current_run_id(),
    )


@task(name="apply-retention")
def apply_retention(root: Path, keep_last: int, keep_days: int, now_iso: str) -> list[str]:
    """Delete the sets retention no longer keeps; returns their names."""
    sets = backup.list_sets(root)
    doomed = plan_retention(
        [SetAge(m.name, m.created, m.status == "verified") for m in sets],
        keep_last=keep_last,
        keep_days=keep_days,
        now=_parse(now_iso),
    )
    logger = get_run_logger()
    for name in doomed:
        backup.remove_set(root, name)
        backups.mark_backup_removed(
            records_engine(),
            name,
            reason=f"retention: keep {keep_last} / {keep_days} days",
            flow_run_id=current_run_id(),
        )
        logger.info("retention removed backup set %s", name)
    return doomed


@task(name="restore-records")
async def restore_records(directory: Path, dump: DatabaseDump, target_block: str) -> dict[str, int]:
    return backup.restore_database(directory, dump, await database_url(target_block))


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment)

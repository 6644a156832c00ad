"""Runbooks: weekly backup, and restore.

Backup (seed 002's backup procedure, seed 000's database and program backups):

1. Dump the records database — PostgreSQL with ``pg_dump`` in an exported snapshot,
   SQLite with its online backup API — compressed, with its SHA-256 and row counts.
2. Save each managed program's ProgramData bytes with their hashes.
3. Restore the dump into a scratch database and compare every table's row count: only
   then does the set count as good (``manifest.json`` says ``verified``).
4. Record the set, apply retention (keep the newest N good sets and anything younger than
   the given days), publish a table artifact; alert Slack on failure.

Restore (seed 002's data corruption response): pick a set (``latest`` = newest verified),
check the SHA-256 of every file against the manifest — a corrupted or altered set is
refused — restore into an empty target database and check its row counts.

Sets live under ``backup_dir`` (default ``var/backups`` in the checkout, git-ignored);
copy them off the machine as seed 001 asks ("secure offline location").
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.database import RecordsDatabase
from blocks.programs import ManagedPrograms
from core.errors import BackupError, HashMismatch, RecordsError, RunbookError
from core.settings import REPO_ROOT
from domain import messages
from domain.forms import titled_form
from domain.report import fields_table
from store import backup
from store.backup import Manifest
from store.records import audit
from store.records.backups import backup_subject
from tasks import backup as tasks
from tasks.notify import notify
from tasks.records import current_run_id, records_engine


def backup_root(backup_dir: str) -> Path:
    path = Path(backup_dir).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


@flow(name="backup", persist_result=False)
@titled_form
async def backup_records_and_programs(
    backup_dir: str = str(backup.DEFAULT_ROOT),
    database_block: str | None = None,
    cluster_block: str = "localnet",
    programs_block: str | None = "managed-programs",
    keep_last: Annotated[int, Field(ge=1)] = 8,
    keep_days: Annotated[int, Field(ge=0)] = 90,
    slack_block: str | None = None,
) -> dict[str, Any]:
    """Back up the records database and the program binaries; verify by restoring.

    Args:
        backup_dir: Where backup sets live; relative paths are inside the checkout.
        database_block: The RecordsDatabase block of the database to back up; empty backs
            up this worker's DATABASE_URL.
        cluster_block: The SolanaCluster block the program binaries are read from.
        programs_block: The ManagedPrograms block naming the programs whose binaries to
            save; empty saves none.
        keep_last: Retention: always keep the newest this many good sets.
        keep_days: Retention: keep every set younger than this many days.
        slack_block: The SlackChannel block to alert on failure; empty logs instead.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    root = backup_root(backup_dir)
    run_id = current_run_id()
    manifest = Manifest(
        name=backup.new_set_name(now, (run_id or "")[:8]),
        created_at=now.isoformat(),
        cluster="",
    )
    directory = root / manifest.name
    directory.mkdir(parents=True, exist_ok=False)
    try:
        manifest.records = await tasks.dump_records(database_block, directory)
        managed = await _managed_programs(programs_block)
        if managed is not None:
            cluster = await load_block(SolanaCluster, cluster_block)
            manifest.cluster = cluster.cluster
            manifest.programs = await tasks.save_programs(cluster, managed.programs, directory)
        await tasks.verify_dump(database_block, directory, manifest.records)
        manifest.status = "verified"
        manifest.verified_at = datetime.now(UTC).isoformat()
    except Exception as exc:  # the set is kept, marked failed, with the reason
        first = (str(exc).strip().splitlines() or [""])[0]
        detail = str(exc) if isinstance(exc, RunbookError) else f"{type(exc).__name__}: {first}"
        manifest.status, manifest.detail = "failed", detail
    backup.write_manifest(directory, manifest)

    try:
        tasks.record_backup(root, manifest)
    except RecordsError as exc:
        logger.warning("backup set %s not recorded: %s", manifest.name, exc)
    await publish_backup_table(manifest)
    if manifest.status != "verified":
        await notify(
            *messages.failed(
                what=f"Backup {manifest.name}",
                error=manifest.detail or "?",
                run_url=flow_run.ui_url,
            ),
            slack_block=slack_block,
        )
        raise BackupError(
            f"backup set {manifest.name} is not good: {manifest.detail}. It is kept for "
            "inspection and does not count for retention."
        )
    removed = tasks.apply_retention(root, keep_last, keep_days, now.isoformat())
    logger.info("backup set %s verified; retention removed %d set(s)", manifest.name, len(removed))
    return {
        "name": manifest.name,
        "directory": str(directory),
        "records_sha256": manifest.records.sha256 if manifest.records else None,
        "tables": manifest.records.tables if manifest.records else {},
        "programs": {p.program_id: p.verifiable_sha256 for p in manifest.programs},
        "removed": removed,
    }


@flow(name="restore-backup", persist_result=False)
@titled_form
async def restore_backup(
    target_block: str,
    backup_set: str = "latest",
    backup_dir: str = str(backup.DEFAULT_ROOT),
    slack_block: str | None = None,
) -> dict[str, Any]:
    """Restore a verified backup set into a new database after checking its hashes.

    Args:
        target_block: A RecordsDatabase block naming a new, empty database to restore
            into; switch DATABASE_URL to it once the restore is checked.
        backup_set: A backup set's name, or latest (the newest verified set).
        backup_dir: Where backup sets live; relative paths are inside the checkout.
        slack_block: The SlackChannel block to alert on failure; empty logs instead.
    """
    logger = get_run_logger()
    # The target first: a missing block is named before anything is read or written.
    await load_block(RecordsDatabase, target_block)
    root = backup_root(backup_dir)
    manifest = backup.find_set(root, backup_set)
    directory = root / manifest.name
    if manifest.status != "verified" or manifest.records is None:
        raise BackupError(
            f"backup set {manifest.name} is {manifest.status}: only a verified set is restored"
        )
    try:
        backup.check_hashes(directory, manifest)
    except HashMismatch as exc:
        _audit("backup.restore_refused", manifest.name, {"reason": str(exc)})
        await notify(
            *messages.failed(
                what=f"Restore of backup {manifest.name}", error=str(exc), run_url=flow_run.ui_url
            ),
            slack_block=slack_block,
        )
        raise
    counts = await tasks.restore_records(directory, manifest.records, target_block)
    if counts != manifest.records.tables:
        raise BackupError(
            f"restored row counts differ from backup {manifest.name}: {counts} != "
            f"{manifest.records.tables}"
        )
    _audit("backup.restored", manifest.name, {"target_block": target_block, "tables": counts})
    logger.info("backup %s restored into %s: %d tables", manifest.name, target_block, len(counts))
    await acreate_markdown_artifact(
        key="restore-report",
        description=f"Restore of backup {manifest.name}",
        markdown="\n".join(
            [
                f"# Restored backup {manifest.name}",
                "",
                f"Into the database of block `{target_block}`; every file's SHA-256 matched "
                "the manifest and every table holds the backed-up row count.",
                "",
                *fields_table(sorted(counts.items()), header=("table", "rows")),
            ]
        ),
    )
    return {"name": manifest.name, "tables": counts}


async def _managed_programs(block: str | None) -> ManagedPrograms | None:
    """The programs whose binaries to save; a missing block only skips them (logged)."""
    if not block:
        return None
    try:
        return await load_block(ManagedPrograms, block)
    except ValueError:  # Prefect: no block document of that name
        get_run_logger().warning(
            "no managed programs block %r: program binaries not saved. Create it in Blocks "
            "> Managed Programs.",
            block,
        )
        return None


async def publish_backup_table(manifest: Manifest) -> None:
    rows: list[dict[str, Any]] = []
    if manifest.records is not None:
        rows += [
            {"item": f"table {t}", "rows": n, "sha256": ""}
            for t, n in sorted(manifest.records.tables.items())
        ]
        rows.insert(
            0,
            {"item": manifest.records.file, "rows": "", "sha256": manifest.records.sha256},
        )
    rows += [
        {"item": f"program {p.name} ({p.program_id})", "rows": "", "sha256": p.verifiable_sha256}
        for p in manifest.programs
    ]
    await acreate_table_artifact(
        key="backup-report",
        table=rows,
        description=f"Backup set {manifest.name}: {manifest.status}"
        + (f" ({manifest.detail})" if manifest.detail else ""),
    )


def _audit(action: str, name: str, details: dict[str, Any]) -> None:
    """Audit in the live records database; a restore must go on if that is the one lost."""
    try:
        audit.audit(
            records_engine(), "runbooks", action, backup_subject(name), details, current_run_id()
        )
    except RecordsError as exc:
        get_run_logger().warning("not audited (%s): %s", action, exc)

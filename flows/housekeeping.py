"""Runbook: monthly housekeeping of the records database (seed 000's database maintenance).

1. Remove executed proposals executed more than ``proposal_days`` ago, with their
   approvals and executions (children first: the foreign keys hold). A proposal another
   runbook's rows still reference is kept, and the report says by what. The audit log
   keeps every proposal's history.
2. Archive migration progress finished more than ``migration_days`` ago: the migration
   runbook's rows (``migration_runs``, and the ``migration_accounts`` that reference
   them) move into ``archived_records`` as JSON. Where those tables are not installed the
   step is skipped, and the report says so.
3. Report what was done (markdown artifact); ``dry_run`` reports without changing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import Field

from domain.forms import titled_form
from store.records import housekeeping as housekeeping_records
from tasks import housekeeping as tasks


@flow(name="housekeeping", persist_result=False)
@titled_form
async def housekeeping(
    proposal_days: Annotated[int, Field(ge=1)] = 90,
    migration_days: Annotated[int, Field(ge=1)] = 30,
    migration_table: str = "migration_runs",
    migration_finished_column: str = "finished_at",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Remove old proposals and archive finished migration progress.

    Args:
        proposal_days: Remove executed proposals older than this many days.
        migration_days: Archive migration progress finished more than this many days ago.
        migration_table: The table holding migration progress.
        migration_finished_column: Its finished-at column.
        dry_run: Report what would be removed and archived, and change nothing.
    """
    logger = get_run_logger()
    now = datetime.now(UTC)
    removed = tasks.remove_proposals(now - timedelta(days=proposal_days), dry_run)
    if dry_run:
        archived = housekeeping_records.ArchiveResult(migration_table, {}, skipped="dry run")
    else:
        archived = tasks.archive_rows(
            migration_table, migration_finished_column, now - timedelta(days=migration_days)
        )
    verb = "would remove" if dry_run else "removed"
    lines = [
        f"# Housekeeping {now.date().isoformat()}" + (" (dry run)" if dry_run else ""),
        "",
        f"## Executed proposals older than {proposal_days} days",
        "",
        f"{verb} {len(removed.proposal_ids)} proposal(s) with {removed.approvals} approval(s) "
        f"and {removed.executions} execution(s)"
        + (f": #{', #'.join(map(str, removed.proposal_ids))}" if removed.proposal_ids else ""),
    ]
    if removed.kept:
        lines += ["", "Kept although old enough:"]
        lines += [f"- #{pid}: {why}" for pid, why in sorted(removed.kept.items())]
    lines += ["", f"## Migration progress finished more than {migration_days} days ago", ""]
    if archived.skipped:
        lines.append(f"Skipped: {archived.skipped}.")
    elif archived.archived:
        lines += [f"- {table}: {n} row(s) archived" for table, n in archived.archived.items()]
    else:
        lines.append("Nothing old enough to archive.")
    await acreate_markdown_artifact(
        key="housekeeping-report", markdown="\n".join(lines), description="Monthly housekeeping"
    )
    logger.info(
        "%s %d proposals; archived %s%s",
        verb,
        len(removed.proposal_ids),
        archived.archived or "nothing",
        f" ({archived.skipped})" if archived.skipped else "",
    )
    return {
        "dry_run": dry_run,
        "removed_proposals": list(removed.proposal_ids),
        "removed_approvals": removed.approvals,
        "removed_executions": removed.executions,
        "kept": {str(k): v for k, v in removed.kept.items()},
        "archived": archived.archived,
        "archive_skipped": archived.skipped,
    }

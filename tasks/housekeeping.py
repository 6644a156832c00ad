"""Tasks of the housekeeping runbook: each one transaction on the records database."""

from __future__ import annotations

from datetime import datetime

from prefect import task

from store.records import housekeeping as housekeeping_records
from tasks.records import current_run_id, records_engine


@task(name="remove-executed-proposals", retries=1, retry_delay_seconds=2)
def remove_proposals(older_than: datetime, dry_run: bool) -> housekeeping_records.RemovedProposals:
    return housekeeping_records.remove_executed_proposals(
        records_engine(), older_than=older_than, dry_run=dry_run, flow_run_id=current_run_id()
    )


@task(name="archive-migration-progress", retries=1, retry_delay_seconds=2)
def archive_rows(
    table: str, column: str, older_than: datetime
) -> housekeeping_records.ArchiveResult:
    return housekeeping_records.archive_old_rows(
        records_engine(),
        table=table,
        timestamp_column=column,
        older_than=older_than,
        flow_run_id=current_run_id(),
    )

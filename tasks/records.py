"""Tasks that write the audit records. Each is one short transaction, idempotent where
a retry could repeat it (proposals by key, threshold time and execution once)."""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from typing import Any

from prefect import task
from prefect.runtime import flow_run
from sqlalchemy.engine import Engine

from store import db, records
from store.records import audit as audit_records
from store.records import proposals as proposals_records
from store.records.proposals import ApprovalRecord, ExecutionRecord, ProposalRecord


@cache
def _engine(url: str, may_create: bool) -> Engine:
    engine = db.create_engine(url)
    if not may_create:  # an explicit DATABASE_URL: an existing records database
        db.require_records(engine)
    db.migrate(engine)
    return engine


def records_engine() -> Engine:
    """The records database of this process (``DATABASE_URL``), migrated to head once.
    An explicit ``DATABASE_URL`` must name an existing one (``store.db.database_url``)."""
    # Looked up once per environment: reading the settings costs milliseconds, and a
    # migration asks for the engine several times per batch.
    return _engine_for(os.environ.get("DATABASE_URL"), os.environ.get("RUNBOOKS_CREATE_DATABASE"))


@cache
def _engine_for(database_url: str | None, create_database: str | None) -> Engine:
    return _engine(db.database_url(), db.may_create_database())


def current_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


@task(name="record-proposal", retries=2, retry_delay_seconds=1)
def record_proposal(**fields: Any) -> ProposalRecord:
    return proposals_records.record_proposal(
        records_engine(), flow_run_id=current_run_id(), **fields
    )


@task(name="record-approval", retries=2, retry_delay_seconds=1)
def record_approval(proposal_id: int, **fields: Any) -> ApprovalRecord:
    return proposals_records.record_approval(
        records_engine(), proposal_id, flow_run_id=current_run_id(), **fields
    )


@task(name="mark-threshold-met", retries=2, retry_delay_seconds=1)
def mark_threshold_met(proposal_id: int, at: datetime | None = None) -> ProposalRecord:
    """``at``: when the chain says the threshold was met (Squads), else now."""
    return proposals_records.mark_threshold_met(
        records_engine(), proposal_id, at, flow_run_id=current_run_id()
    )


@task(name="set-proposal-status", retries=2, retry_delay_seconds=1)
def set_proposal_status(
    proposal_id: int, status: str, actor: str = records.DEFAULT_ACTOR, reason: str | None = None
) -> ProposalRecord:
    return proposals_records.set_proposal_status(
        records_engine(),
        proposal_id,
        status,
        actor=actor,
        reason=reason,
        flow_run_id=current_run_id(),
    )


@task(name="record-execution", retries=2, retry_delay_seconds=1)
def record_execution(proposal_id: int, **fields: Any) -> ExecutionRecord:
    return proposals_records.record_execution(
        records_engine(), proposal_id, flow_run_id=current_run_id(), **fields
    )


@task(name="audit", retries=2, retry_delay_seconds=1)
def audit(
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    actor: str = records.DEFAULT_ACTOR,
) -> None:
    audit_records.audit(records_engine(), actor, action, subject, details, current_run_id())


def proposal_by_key(key: str) -> ProposalRecord | None:
    return proposals_records.get_proposal_by_key(records_engine(), key)


def proposal_approvals(proposal_id: int) -> list[ApprovalRecord]:
    return proposals_records.approvals(records_engine(), proposal_id)


def proposal_flow_runs(proposal_id: int) -> list[str]:
    """The flow runs that worked on a proposal, as its records name them (the run that
    recorded it, then any that recorded something of it since), oldest first."""
    runs: list[str] = []
    proposal = proposals_records.get_proposal(records_engine(), proposal_id)
    if proposal is not None and proposal.flow_run_id:
        runs.append(proposal.flow_run_id)
    events = audit_records.audit_events(
        records_engine(), proposals_records.proposal_subject(proposal_id)
    )
    for run in [e.flow_run_id for e in events] + [
        a.flow_run_id for a in proposal_approvals(proposal_id)
    ]:
        if run and run not in runs:
            runs.append(run)
    return runs

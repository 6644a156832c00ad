"""Records of the daily health check: its reports, and the last known hash of each
program (the upgrade runbook records it too; a change nobody proposed is critical).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.errors import RecordsError
from store.db import redacted, session_scope
from store.models import HEALTH_LEVELS, Execution, HealthReport, ProgramHash, Proposal
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _aware,
    _choice,
    _flush_or_conflict,
    _int,
    _sha256_hex,
    _text,
    _write_audit,
    insert_once,
    program_subject,
    retry_conflict,
)
from store.records.proposals import ProposalRecord


class HealthReportRecord(Record):
    id: int
    cluster: str
    at: datetime
    level: str
    slot: int | None
    findings: tuple[dict[str, Any], ...]
    flow_run_id: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class ProgramHashRecord(Record):
    cluster: str
    program_id: str
    hash: str
    slot: int
    recorded_at: datetime


def health_subject(cluster: str) -> str:
    """The audit ``subject`` of a cluster's health reports."""
    return f"health:{cluster}"


def record_health_report(
    engine: Engine,
    *,
    cluster: str,
    level: str,
    findings: Sequence[Mapping[str, Any]],
    slot: int | None = None,
    at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> HealthReportRecord:
    """Record one health run; idempotent per ``flow_run_id``. Audit: ``health.reported``."""
    cluster = _text("cluster", cluster)
    level = _choice("level", level, HEALTH_LEVELS)
    if slot is not None:
        slot = _int("slot", slot, minimum=0)
    when = _aware("at", at)
    payload = [dict(f) for f in findings]
    counts = {lv: sum(1 for f in payload if f.get("level") == lv) for lv in HEALTH_LEVELS}

    def find(session: Session) -> HealthReport | None:
        if flow_run_id is None:
            return None
        return session.scalar(select(HealthReport).where(HealthReport.flow_run_id == flow_run_id))

    return insert_once(
        engine,
        HealthReportRecord,
        find=find,
        new=lambda: HealthReport(
            cluster=cluster,
            at=when,
            level=level,
            slot=slot,
            findings=payload,
            flow_run_id=flow_run_id,
        ),
        audit=lambda report: {
            "actor": actor,
            "action": "health.reported",
            "subject": health_subject(cluster),
            "details": {"report_id": report.id, "level": level, "slot": slot, "counts": counts},
            "flow_run_id": flow_run_id,
            "at": when,
        },
        what=f"the health report of flow run {flow_run_id}",
    )


def acknowledge_health_report(
    engine: Engine,
    report_id: int,
    *,
    by: str,
    at: datetime | None = None,
    flow_run_id: str | None = None,
) -> HealthReportRecord:
    """Record who acknowledged a report's alert; idempotent (the first one stays).

    Audit: ``health.acknowledged`` by ``by``.
    """
    by = _text("by", by)
    when = _aware("at", at)
    with session_scope(engine) as session:
        report = session.scalar(
            select(HealthReport).where(HealthReport.id == report_id).with_for_update()
        )
        if report is None:
            raise RecordsError(
                f"no health report {report_id} in {redacted(engine.url)}; check the report id"
            )
        if report.acknowledged_by is not None:
            return HealthReportRecord.model_validate(report)
        report.acknowledged_by, report.acknowledged_at = by, when
        _write_audit(
            session,
            actor=by,
            action="health.acknowledged",
            subject=health_subject(report.cluster),
            details={"report_id": report.id, "level": report.level},
            flow_run_id=flow_run_id,
            at=when,
        )
        return HealthReportRecord.model_validate(report)


def health_reports(
    engine: Engine, cluster: str | None = None, *, limit: int | None = None
) -> list[HealthReportRecord]:
    """Health reports, newest first."""
    query = select(HealthReport).order_by(HealthReport.at.desc(), HealthReport.id.desc())
    if cluster is not None:
        query = query.where(HealthReport.cluster == cluster)
    if limit is not None:
        query = query.limit(limit)
    with session_scope(engine) as session:
        return [HealthReportRecord.model_validate(r) for r in session.scalars(query).all()]


def executed_change_to_hash(
    engine: Engine, cluster: str, program_id: str, new_hash: str
) -> int | None:
    """The id of the newest executed proposal that left ``program_id`` at ``new_hash``.

    None means no recorded runbook made that change: an upgrade nobody proposed.
    """
    digest = _sha256_hex("new_hash", new_hash)
    query = (
        select(Proposal.id)
        .join(Execution, Execution.proposal_id == Proposal.id)
        .where(
            Proposal.cluster == cluster,
            Proposal.program_id == program_id,
            Proposal.status == "executed",
            Execution.new_hash == digest,
        )
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(1)
    )
    with session_scope(engine) as session:
        return session.scalar(query)


def proposals_in_timelock(engine: Engine, cluster: str) -> list[ProposalRecord]:
    """Approved proposals on ``cluster`` (threshold met, not executed yet), oldest first."""
    query = (
        select(Proposal)
        .where(
            Proposal.cluster == cluster,
            Proposal.status == "approved",
            Proposal.threshold_met_at.is_not(None),
        )
        .order_by(Proposal.threshold_met_at, Proposal.id)
    )
    with session_scope(engine) as session:
        return [ProposalRecord.model_validate(p) for p in session.scalars(query).all()]


# ---------------------------------------------------------------------- program hash


def set_program_hash(
    engine: Engine,
    cluster: str,
    program_id: str,
    hash: str,
    slot: int,
    *,
    recorded_at: datetime | None = None,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> ProgramHashRecord:
    """Record the verifiable-build hash a program has on ``cluster`` as of ``slot``.

    Idempotent: the same hash and slot again write nothing. Audit:
    ``program_hash.recorded`` (with the previous hash, so a change shows in the log).
    """
    cluster = _text("cluster", cluster)
    program_id = _text("program_id", program_id)
    digest = _sha256_hex("hash", hash)
    slot = _int("slot", slot, minimum=0)
    when = _aware("recorded_at", recorded_at)

    def attempt(session: Session) -> ProgramHashRecord:
        row = session.scalar(
            select(ProgramHash)
            .where(ProgramHash.cluster == cluster, ProgramHash.program_id == program_id)
            .with_for_update()
        )
        if row is not None and row.hash == digest and row.slot == slot:
            return ProgramHashRecord.model_validate(row)
        previous = None if row is None else {"hash": row.hash, "slot": row.slot}
        if row is None:
            row = ProgramHash(cluster=cluster, program_id=program_id)
            session.add(row)
        row.hash, row.slot, row.recorded_at = digest, slot, when
        _flush_or_conflict(session)
        _write_audit(
            session,
            actor=actor,
            action="program_hash.recorded",
            subject=program_subject(cluster, program_id),
            details={"hash": digest, "slot": slot, "previous": previous},
            flow_run_id=flow_run_id,
            at=when,
        )
        return ProgramHashRecord.model_validate(row)

    return retry_conflict(engine, attempt, f"the hash of {program_id} on {cluster}")


def get_program_hash(engine: Engine, cluster: str, program_id: str) -> ProgramHashRecord | None:
    """The last recorded hash of a program on a cluster, or None."""
    with session_scope(engine) as session:
        row = session.get(ProgramHash, (cluster, program_id))
        return None if row is None else ProgramHashRecord.model_validate(row)

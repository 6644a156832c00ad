"""Repository of the scheduled operations: health reports, key registry and rotations,
backups, and housekeeping.

The conventions of ``store.records`` hold here too (its helpers are reused, not copied):
one transaction per function, the audit row of a change written in that same
transaction, frozen dataclasses out, ``InputError`` for bad arguments, ``RecordsError``
when the database refuses, aware UTC datetimes in and out. Functions described as
*idempotent* may be retried by a Prefect task.

Housekeeping reflects the live schema instead of importing other runbooks' models: the
migration runbook's tables (Alembic branch 0002) may or may not be installed, and rows
of any table may reference a proposal.
"""

from __future__ import annotations

import base64
import decimal
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.errors import InputError, RecordsError
from store.db import redacted, session_scope
from store.models import Approval, Execution, Proposal
from store.operations_models import (
    BACKUP_STATUSES,
    HEALTH_LEVELS,
    KEY_ROLES,
    ArchivedRecord,
    Backup,
    HealthReport,
    KeyRotation,
    ManagedKey,
)
from store.records import (
    DEFAULT_ACTOR,
    ProposalRecord,
    _aware,
    _choice,
    _int,
    _proposal_record,
    _sha256_hex,
    _text,
    _utc,
    _utc_or_none,
    _write_audit,
    program_subject,
)

# Executed proposals and the rows that belong to them (removed together).
_PROPOSAL_CHILDREN = ("approvals", "executions")
# Deletes and archive reads go in chunks: SQLite caps the parameters of one statement.
_CHUNK = 500
# How deep housekeeping follows foreign keys to archive rows that reference archived rows.
_MAX_ARCHIVE_DEPTH = 4


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class HealthReportRecord:
    id: int
    cluster: str
    at: datetime
    level: str
    slot: int | None
    findings: tuple[dict[str, Any], ...]
    flow_run_id: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    cluster: str
    pubkey: str
    role: str
    label: str
    programs: tuple[str, ...]
    rotated_at: datetime
    retired_at: datetime | None
    registered_at: datetime

    @property
    def active(self) -> bool:
        return self.retired_at is None


@dataclass(frozen=True, slots=True)
class RotationRecord:
    id: int
    cluster: str
    program_id: str
    role: str
    old_authority: str
    new_authority: str | None
    proposal_id: int | None
    signature: str | None
    slot: int | None
    at: datetime
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class BackupRecord:
    id: int
    name: str
    directory: str
    created_at: datetime
    backend: str
    records_file: str
    records_sha256: str
    table_counts: dict[str, int]
    programs: dict[str, Any]
    status: str
    detail: str | None
    verified_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class RemovedProposals:
    """What removing old executed proposals did (or would do, on a dry run)."""

    proposal_ids: tuple[int, ...]
    approvals: int
    executions: int
    # proposal id -> why it was kept although old enough
    kept: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """Rows archived from ``table`` (and rows of other tables that referenced them)."""

    table: str
    archived: dict[str, int]
    skipped: str | None = None

    @property
    def total(self) -> int:
        return sum(self.archived.values())


def health_subject(cluster: str) -> str:
    """The audit ``subject`` of a cluster's health reports."""
    return f"health:{cluster}"


def key_subject(cluster: str, pubkey: str) -> str:
    """The audit ``subject`` of a registered key."""
    return f"key:{cluster}:{pubkey}"


def backup_subject(name: str) -> str:
    """The audit ``subject`` of a backup set."""
    return f"backup:{name}"


HOUSEKEEPING_SUBJECT = "housekeeping"


# ---------------------------------------------------------------------------- health


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
    with session_scope(engine) as session:
        if flow_run_id is not None:
            existing = session.scalar(
                select(HealthReport).where(HealthReport.flow_run_id == flow_run_id)
            )
            if existing is not None:
                return _health_record(existing)
        report = HealthReport(
            cluster=cluster,
            at=when,
            level=level,
            slot=slot,
            findings=payload,
            flow_run_id=flow_run_id,
        )
        session.add(report)
        session.flush()
        counts = {lv: sum(1 for f in payload if f.get("level") == lv) for lv in HEALTH_LEVELS}
        _write_audit(
            session,
            actor=actor,
            action="health.reported",
            subject=health_subject(cluster),
            details={"report_id": report.id, "level": level, "slot": slot, "counts": counts},
            flow_run_id=flow_run_id,
            at=when,
        )
        return _health_record(report)


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
            return _health_record(report)
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
        return _health_record(report)


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
        return [_health_record(r) for r in session.scalars(query).all()]


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
        return [_proposal_record(p) for p in session.scalars(query).all()]


# ------------------------------------------------------------------------------ keys


def register_key(
    engine: Engine,
    *,
    cluster: str,
    pubkey: str,
    role: str,
    label: str,
    programs: Iterable[str] = (),
    rotated_at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> KeyRecord:
    """Add a key to the registry, or add ``programs`` to a registered one; idempotent.

    A retired key cannot come back (``InputError``): a rotated-out key is treated as
    exposed. A key keeps one role. Audit: ``key.registered`` / ``key.programs_added``.
    """
    with session_scope(engine) as session:
        row = _register_key(
            session,
            cluster=_text("cluster", cluster),
            pubkey=_text("pubkey", pubkey),
            role=_choice("role", role, KEY_ROLES),
            label=_text("label", label),
            programs=[_text("program", p) for p in programs],
            rotated_at=_aware("rotated_at", rotated_at),
            flow_run_id=flow_run_id,
            actor=actor,
        )
        return _key_record(row)


def retire_key(
    engine: Engine,
    *,
    cluster: str,
    pubkey: str,
    reason: str,
    at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> KeyRecord:
    """Mark a registered key retired; idempotent. Audit: ``key.retired``."""
    reason = _text("reason", reason)
    when = _aware("at", at)
    with session_scope(engine) as session:
        row = _lock_key(session, cluster, pubkey)
        if row is None:
            raise RecordsError(
                f"key {pubkey} is not registered on {cluster}; register it before retiring it"
            )
        if row.retired_at is None:
            row.retired_at = when
            _write_audit(
                session,
                actor=actor,
                action="key.retired",
                subject=key_subject(cluster, pubkey),
                details={"role": row.role, "reason": reason, "programs": list(row.programs)},
                flow_run_id=flow_run_id,
                at=when,
            )
        return _key_record(row)


def managed_keys(
    engine: Engine, cluster: str | None = None, *, include_retired: bool = False
) -> list[KeyRecord]:
    """Registered keys, oldest rotation first."""
    query = select(ManagedKey).order_by(ManagedKey.rotated_at, ManagedKey.id)
    if cluster is not None:
        query = query.where(ManagedKey.cluster == cluster)
    if not include_retired:
        query = query.where(ManagedKey.retired_at.is_(None))
    with session_scope(engine) as session:
        return [_key_record(k) for k in session.scalars(query).all()]


def record_rotation(
    engine: Engine,
    *,
    cluster: str,
    program_id: str,
    old_authority: str,
    new_authority: str | None,
    proposal_id: int | None,
    signature: str | None = None,
    slot: int | None = None,
    role: str = "upgrade",
    label: str | None = None,
    at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> RotationRecord:
    """Record a verified authority transfer and update the key registry; idempotent per
    ``proposal_id``.

    In the same transaction: the old key no longer controls ``program_id`` (and is
    retired when it controls nothing else); the new key is registered (or gains the
    program). ``new_authority`` None records the program made immutable. Audit:
    ``key.rotated`` on the program's subject.
    """
    cluster = _text("cluster", cluster)
    program_id = _text("program_id", program_id)
    old_authority = _text("old_authority", old_authority)
    role = _choice("role", role, KEY_ROLES)
    if new_authority is not None:
        new_authority = _text("new_authority", new_authority)
    if slot is not None:
        slot = _int("slot", slot, minimum=0)
    when = _aware("at", at)
    with session_scope(engine) as session:
        if proposal_id is not None:
            existing = session.scalar(
                select(KeyRotation).where(KeyRotation.proposal_id == proposal_id)
            )
            if existing is not None:
                return _rotation_record(existing)
        rotation = KeyRotation(
            cluster=cluster,
            program_id=program_id,
            role=role,
            old_authority=old_authority,
            new_authority=new_authority,
            proposal_id=proposal_id,
            signature=signature,
            slot=slot,
            at=when,
            flow_run_id=flow_run_id,
        )
        session.add(rotation)
        session.flush()
        old = _lock_key(session, cluster, old_authority)
        if old is not None:
            old.programs = [p for p in old.programs if p != program_id]
            if not old.programs and old.retired_at is None:
                old.retired_at = when
        if new_authority is not None:
            _register_key(
                session,
                cluster=cluster,
                pubkey=new_authority,
                role=role,
                label=label or f"{role} authority of {program_id}",
                programs=[program_id],
                rotated_at=when,
                flow_run_id=flow_run_id,
                actor=actor,
            )
        _write_audit(
            session,
            actor=actor,
            action="key.rotated",
            subject=program_subject(cluster, program_id),
            details={
                "rotation_id": rotation.id,
                "proposal_id": proposal_id,
                "old_authority": old_authority,
                "new_authority": new_authority,
                "old_key_retired": old is not None and old.retired_at is not None,
                "signature": signature,
                "slot": slot,
            },
            flow_run_id=flow_run_id,
            at=when,
        )
        return _rotation_record(rotation)


def rotations(engine: Engine, program_id: str | None = None) -> list[RotationRecord]:
    """Authority transfers, oldest first."""
    query = select(KeyRotation).order_by(KeyRotation.at, KeyRotation.id)
    if program_id is not None:
        query = query.where(KeyRotation.program_id == program_id)
    with session_scope(engine) as session:
        return [_rotation_record(r) for r in session.scalars(query).all()]


# --------------------------------------------------------------------------- backups


def record_backup(
    engine: Engine,
    *,
    name: str,
    directory: str,
    backend: str,
    records_file: str,
    records_sha256: str,
    table_counts: Mapping[str, int],
    programs: Mapping[str, Any],
    status: str,
    detail: str | None = None,
    created_at: datetime | None = None,
    verified_at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> BackupRecord:
    """Record a backup set once it was checked; idempotent per ``name``.

    Audit: ``backup.verified`` or ``backup.failed``.
    """
    name = _text("name", name)
    status = _choice("status", status, BACKUP_STATUSES[:2])
    digest = _sha256_hex("records_sha256", records_sha256)
    created = _aware("created_at", created_at)
    with session_scope(engine) as session:
        existing = session.scalar(select(Backup).where(Backup.name == name))
        if existing is not None:
            return _backup_record(existing)
        row = Backup(
            name=name,
            directory=_text("directory", directory),
            created_at=created,
            backend=_text("backend", backend),
            records_file=_text("records_file", records_file),
            records_sha256=digest,
            table_counts=dict(table_counts),
            programs=dict(programs),
            status=status,
            detail=detail,
            verified_at=None if verified_at is None else _aware("verified_at", verified_at),
            flow_run_id=flow_run_id,
        )
        session.add(row)
        session.flush()
        _write_audit(
            session,
            actor=actor,
            action=f"backup.{status}",
            subject=backup_subject(name),
            details={
                "backup_id": row.id,
                "backend": row.backend,
                "records_sha256": digest,
                "tables": dict(table_counts),
                "programs": sorted(programs),
                "detail": detail,
            },
            flow_run_id=flow_run_id,
        )
        return _backup_record(row)


def mark_backup_removed(
    engine: Engine,
    name: str,
    *,
    reason: str,
    at: datetime | None = None,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> BackupRecord | None:
    """Record that retention deleted a backup set; idempotent. None if never recorded.

    Audit: ``backup.removed``.
    """
    when = _aware("at", at)
    with session_scope(engine) as session:
        row = session.scalar(select(Backup).where(Backup.name == name).with_for_update())
        if row is None:
            return None
        if row.removed_at is None:
            previous = row.status
            row.status, row.removed_at = "removed", when
            _write_audit(
                session,
                actor=actor,
                action="backup.removed",
                subject=backup_subject(name),
                details={"reason": reason, "was": previous},
                flow_run_id=flow_run_id,
                at=when,
            )
        return _backup_record(row)


def backups(engine: Engine, status: str | None = None) -> list[BackupRecord]:
    """Recorded backup sets, newest first."""
    query = select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
    if status is not None:
        query = query.where(Backup.status == _choice("status", status, BACKUP_STATUSES))
    with session_scope(engine) as session:
        return [_backup_record(b) for b in session.scalars(query).all()]


# ---------------------------------------------------------------------- housekeeping


def remove_executed_proposals(
    engine: Engine,
    *,
    older_than: datetime,
    dry_run: bool = False,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> RemovedProposals:
    """Delete executed proposals executed before ``older_than``, with their approvals and
    executions, in one transaction.

    A proposal still referenced from any other table (another runbook's records) is kept
    and reported: its rows are not ours to delete. The audit log keeps the proposals'
    history. Audit: ``housekeeping.proposals_removed`` (also when nothing was removed).
    """
    cutoff = _aware("older_than", older_than)
    executed_when = sa.func.coalesce(Proposal.executed_at, Proposal.created_at)
    with session_scope(engine) as session:
        ids = list(
            session.scalars(
                select(Proposal.id)
                .where(Proposal.status == "executed", executed_when < cutoff)
                .order_by(Proposal.id)
                .with_for_update()
            ).all()
        )
        kept = _referenced_elsewhere(session.connection(), "proposals", ids, _PROPOSAL_CHILDREN)
        removable = [i for i in ids if i not in kept]
        approvals = executions = 0
        for chunk in _chunks(removable):
            approvals += _count(session, Approval, Approval.proposal_id.in_(chunk))
            executions += _count(session, Execution, Execution.proposal_id.in_(chunk))
            if not dry_run:
                session.execute(sa.delete(Approval).where(Approval.proposal_id.in_(chunk)))
                session.execute(sa.delete(Execution).where(Execution.proposal_id.in_(chunk)))
                session.execute(sa.delete(Proposal).where(Proposal.id.in_(chunk)))
        result = RemovedProposals(tuple(removable), approvals, executions, kept)
        if not dry_run:
            _write_audit(
                session,
                actor=actor,
                action="housekeeping.proposals_removed",
                subject=HOUSEKEEPING_SUBJECT,
                details={
                    "older_than": cutoff.isoformat(),
                    "proposal_ids": removable,
                    "approvals": approvals,
                    "executions": executions,
                    "kept": {str(k): v for k, v in kept.items()},
                },
                flow_run_id=flow_run_id,
            )
        return result


def archive_old_rows(
    engine: Engine,
    *,
    table: str,
    timestamp_column: str,
    older_than: datetime,
    flow_run_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> ArchiveResult:
    """Move rows of ``table`` whose ``timestamp_column`` is before ``older_than`` into
    ``archived_records`` (as JSON), in one transaction.

    Rows of other tables that reference a moved row are archived with it (following
    foreign keys a few levels deep), so no constraint is broken. A missing table or column
    is not an error: the result says what was skipped and why. Audit:
    ``housekeeping.archived`` when anything moved.
    """
    table = _text("table", table)
    timestamp_column = _text("timestamp_column", timestamp_column)
    cutoff = _aware("older_than", older_than)
    with session_scope(engine) as session:
        conn = session.connection()
        inspector = sa.inspect(conn)
        if table not in inspector.get_table_names():
            return ArchiveResult(
                table, {}, skipped=f"table {table} is not in this database (not installed)"
            )
        source = sa.Table(table, sa.MetaData(), autoload_with=conn)
        if timestamp_column not in source.c:
            return ArchiveResult(
                table, {}, skipped=f"table {table} has no column {timestamp_column}"
            )
        column = source.c[timestamp_column]
        rows = (
            conn.execute(
                select(source)
                .where(column.is_not(None), column < _bind_time(column, cutoff, conn))
                .with_for_update()
            )
            .mappings()
            .all()
        )
        archived: dict[str, int] = {}
        _archive_rows(conn, source, [dict(r) for r in rows], archived, flow_run_id, depth=0)
        if archived:
            _write_audit(
                session,
                actor=actor,
                action="housekeeping.archived",
                subject=HOUSEKEEPING_SUBJECT,
                details={
                    "table": table,
                    "column": timestamp_column,
                    "older_than": cutoff.isoformat(),
                    "archived": archived,
                },
                flow_run_id=flow_run_id,
            )
        return ArchiveResult(table, archived)


def rows_in_state(
    engine: Engine,
    *,
    table: str,
    status_column: str,
    activity_column: str,
    statuses: Sequence[str],
) -> list[dict[str, Any]] | str:
    """Rows of ``table`` whose status is one of ``statuses``, as dicts with ``key``,
    ``status`` and ``last_activity``; or, when the table or a column is missing, a
    sentence saying so (the table may belong to a runbook whose records are not installed).
    """
    with session_scope(engine) as session:
        conn = session.connection()
        if table not in sa.inspect(conn).get_table_names():
            return f"table {table} is not in this database (its records are not installed)"
        source = sa.Table(table, sa.MetaData(), autoload_with=conn)
        missing = [c for c in (status_column, activity_column) if c not in source.c]
        if missing:
            return f"table {table} has no column {', '.join(missing)}"
        primary = list(source.primary_key.columns)
        query = select(*primary, source.c[status_column], source.c[activity_column]).where(
            source.c[status_column].in_(list(statuses))
        )
        found = []
        for row in conn.execute(query).mappings():
            last = row[activity_column]
            if isinstance(last, datetime) and last.tzinfo is None:
                last = last.replace(tzinfo=UTC)  # stored as UTC wall time (store.models)
            found.append(
                {
                    "key": "|".join(str(row[c.name]) for c in primary),
                    "status": row[status_column],
                    "last_activity": last,
                }
            )
        return found


def archived_rows(engine: Engine, source_table: str) -> list[dict[str, Any]]:
    """The archived rows of ``source_table``, oldest archive first."""
    query = (
        select(ArchivedRecord.data)
        .where(ArchivedRecord.source_table == source_table)
        .order_by(ArchivedRecord.id)
    )
    with session_scope(engine) as session:
        return [dict(d) for d in session.scalars(query).all()]


# --------------------------------------------------------------------------- helpers


def _register_key(
    session: Session,
    *,
    cluster: str,
    pubkey: str,
    role: str,
    label: str,
    programs: list[str],
    rotated_at: datetime,
    flow_run_id: str | None,
    actor: str,
) -> ManagedKey:
    row = _lock_key(session, cluster, pubkey)
    if row is None:
        row = ManagedKey(
            cluster=cluster,
            pubkey=pubkey,
            role=role,
            label=label,
            programs=sorted(set(programs)),
            rotated_at=rotated_at,
            flow_run_id=flow_run_id,
        )
        session.add(row)
        session.flush()
        _write_audit(
            session,
            actor=actor,
            action="key.registered",
            subject=key_subject(cluster, pubkey),
            details={
                "role": role,
                "label": label,
                "programs": row.programs,
                "rotated_at": rotated_at.isoformat(),
            },
            flow_run_id=flow_run_id,
        )
        return row
    if row.retired_at is not None:
        raise InputError(
            f"key {pubkey} was retired on {row.retired_at.isoformat()}; a rotated-out key is "
            "treated as exposed and cannot serve again. Generate a new key."
        )
    if row.role != role:
        raise InputError(
            f"key {pubkey} is registered as a {row.role} key, not {role}; use separate keys "
            "per role"
        )
    added = sorted(set(programs) - set(row.programs))
    if added:
        row.programs = sorted({*row.programs, *added})
        _write_audit(
            session,
            actor=actor,
            action="key.programs_added",
            subject=key_subject(cluster, pubkey),
            details={"programs": added},
            flow_run_id=flow_run_id,
        )
    return row


def _lock_key(session: Session, cluster: str, pubkey: str) -> ManagedKey | None:
    return session.scalar(
        select(ManagedKey)
        .where(ManagedKey.cluster == cluster, ManagedKey.pubkey == pubkey)
        .with_for_update()
    )


def _count(session: Session, model: type[Any], condition: Any) -> int:
    return session.scalar(select(sa.func.count()).select_from(model).where(condition)) or 0


def _chunks(values: Sequence[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def _referencing(conn: Connection, table: str) -> list[tuple[str, list[str], list[str]]]:
    """(table, its columns, referred columns) for every foreign key pointing at ``table``."""
    inspector = sa.inspect(conn)
    found = []
    for name in inspector.get_table_names():
        for fk in inspector.get_foreign_keys(name):
            if fk["referred_table"] == table:
                found.append((name, fk["constrained_columns"], fk["referred_columns"]))
    return found


def _referenced_elsewhere(
    conn: Connection, table: str, ids: list[int], known_children: Sequence[str]
) -> dict[int, str]:
    """Which of ``ids`` are referenced by a table other than ``known_children``, and by what."""
    kept: dict[int, str] = {}
    if not ids:
        return kept
    metadata = sa.MetaData()
    for name, columns, referred in _referencing(conn, table):
        if name in known_children or len(columns) != 1 or referred != ["id"]:
            continue
        other = sa.Table(name, metadata, autoload_with=conn)
        column = other.c[columns[0]]
        for chunk in _chunks(ids):
            for ref in conn.execute(select(column).where(column.in_(chunk)).distinct()).scalars():
                kept.setdefault(int(ref), f"referenced by {name}.{columns[0]}")
    return kept


def _archive_rows(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    archived: dict[str, int],
    flow_run_id: str | None,
    *,
    depth: int,
) -> None:
    """Archive ``rows`` of ``table``: first every row referencing them, then themselves."""
    if not rows:
        return
    for name, columns, referred in _referencing(conn, table.name):
        child = sa.Table(name, sa.MetaData(), autoload_with=conn)
        values = [tuple(r[c] for c in referred) for r in rows]
        if depth >= _MAX_ARCHIVE_DEPTH:
            raise RecordsError(
                f"rows of {table.name} are referenced through more than {_MAX_ARCHIVE_DEPTH} "
                "levels of foreign keys; archive them by hand"
            )
        children: list[dict[str, Any]] = []
        key = sa.tuple_(*(child.c[c] for c in columns)) if len(columns) > 1 else child.c[columns[0]]
        for chunk in _chunks(values):
            match = chunk if len(columns) > 1 else [v[0] for v in chunk]
            children += [
                dict(r) for r in conn.execute(select(child).where(key.in_(match))).mappings()
            ]
        _archive_rows(conn, child, children, archived, flow_run_id, depth=depth + 1)
    primary = list(table.primary_key.columns) or list(table.c)
    conn.execute(
        sa.insert(ArchivedRecord),
        [
            {
                "source_table": table.name,
                "source_key": "|".join(str(r[c.name]) for c in primary),
                "data": {k: _jsonable(v) for k, v in r.items()},
                "flow_run_id": flow_run_id,
            }
            for r in rows
        ],
    )
    keys = [tuple(r[c.name] for c in primary) for r in rows]
    key_expr = sa.tuple_(*primary) if len(primary) > 1 else primary[0]
    for chunk in _chunks(keys):
        match = chunk if len(primary) > 1 else [k[0] for k in chunk]
        conn.execute(sa.delete(table).where(key_expr.in_(match)))
    archived[table.name] = archived.get(table.name, 0) + len(rows)


def _bind_time(column: sa.Column[Any], moment: datetime, conn: Connection) -> datetime:
    """``moment`` as the reflected column stores it: naive UTC unless it has a timezone."""
    has_tz = bool(getattr(column.type, "timezone", False))
    if conn.dialect.name == "sqlite" or not has_tz:
        # SQLite and TIMESTAMP WITHOUT TIME ZONE hold UTC wall time (store.models' rule).
        return moment.replace(tzinfo=None)
    return moment


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _health_record(r: HealthReport) -> HealthReportRecord:
    return HealthReportRecord(
        id=r.id,
        cluster=r.cluster,
        at=_utc(r.at),
        level=r.level,
        slot=r.slot,
        findings=tuple(dict(f) for f in r.findings),
        flow_run_id=r.flow_run_id,
        acknowledged_by=r.acknowledged_by,
        acknowledged_at=_utc_or_none(r.acknowledged_at),
    )


def _key_record(k: ManagedKey) -> KeyRecord:
    return KeyRecord(
        id=k.id,
        cluster=k.cluster,
        pubkey=k.pubkey,
        role=k.role,
        label=k.label,
        programs=tuple(k.programs),
        rotated_at=_utc(k.rotated_at),
        retired_at=_utc_or_none(k.retired_at),
        registered_at=_utc(k.registered_at),
    )


def _rotation_record(r: KeyRotation) -> RotationRecord:
    return RotationRecord(
        id=r.id,
        cluster=r.cluster,
        program_id=r.program_id,
        role=r.role,
        old_authority=r.old_authority,
        new_authority=r.new_authority,
        proposal_id=r.proposal_id,
        signature=r.signature,
        slot=r.slot,
        at=_utc(r.at),
        flow_run_id=r.flow_run_id,
    )


def _backup_record(b: Backup) -> BackupRecord:
    return BackupRecord(
        id=b.id,
        name=b.name,
        directory=b.directory,
        created_at=_utc(b.created_at),
        backend=b.backend,
        records_file=b.records_file,
        records_sha256=b.records_sha256,
        table_counts=dict(b.table_counts),
        programs=dict(b.programs),
        status=b.status,
        detail=b.detail,
        verified_at=_utc_or_none(b.verified_at),
        removed_at=_utc_or_none(b.removed_at),
    )


__all__ = [
    "HOUSEKEEPING_SUBJECT",
    "ArchiveResult",
    "BackupRecord",
    "HealthReportRecord",
    "KeyRecord",
    "RemovedProposals",
    "RotationRecord",
    "acknowledge_health_report",
    "archive_old_rows",
    "archived_rows",
    "backup_subject",
    "backups",
    "executed_change_to_hash",
    "health_reports",
    "health_subject",
    "key_subject",
    "managed_keys",
    "mark_backup_removed",
    "proposals_in_timelock",
    "record_backup",
    "record_health_report",
    "record_rotation",
    "register_key",
    "remove_executed_proposals",
    "retire_key",
    "rotations",
    "rows_in_state",
]

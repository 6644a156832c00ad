"""Records of the housekeeping runbook: removing old executed proposals, archiving old
rows of any table into ``archived_records``, and finding rows stuck in a state.

Housekeeping reflects the live schema instead of importing other runbooks' models: the
migration runbook's tables (Alembic branch 0002) may or may not be installed, and rows
of any table may reference a proposal. Its results (``RemovedProposals``,
``ArchiveResult``) are summaries, not rows: frozen dataclasses.
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

from core.errors import RecordsError
from store.db import session_scope
from store.models import Approval, ArchivedRecord, Execution, Proposal
from store.records._base import DEFAULT_ACTOR, _aware, _text, _write_audit

# Executed proposals and the rows that belong to them (removed together).
_PROPOSAL_CHILDREN = ("approvals", "executions")


# Deletes and archive reads go in chunks: SQLite caps the parameters of one statement.
_CHUNK = 500


# How deep housekeeping follows foreign keys to archive rows that reference archived rows.
_MAX_ARCHIVE_DEPTH = 4


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


HOUSEKEEPING_SUBJECT = "housekeeping"


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

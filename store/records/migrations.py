"""Records of the account-migration runbook: the run, and every account it touches with
its pre-migration snapshot and status.

Migrations write in batches (one transaction per batch of accounts, one audit row per
batch), so a 10,000-account migration costs a few hundred short transactions, not tens
of thousands. ``Snapshot`` and ``AccountOutcome`` are what a batch hands in;
``AccountState`` and ``MigratedAccount`` are plain column tuples read back (frozen
dataclasses: they are built positionally, not from a mapped row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InputError, RecordsError
from store.db import redacted, session_scope
from store.models import (
    ACCOUNT_STATUSES,
    MIGRATION_STATUSES,
    MigrationAccount,
    MigrationRun,
    utcnow,
)
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _choice,
    _Conflict,
    _flush_or_conflict,
    _int,
    _sha256_hex,
    _text,
    _write_audit,
    retry_conflict,
)

# Stay well under SQLite's bound-parameter limit in IN (...) lists.
_IN_CHUNK = 500
# Audit rows name at most this many failed accounts; the table has them all.
_AUDIT_FAILURES = 20


class MigrationRunRecord(Record):
    id: int
    key: str
    cluster: str
    program_id: str
    migrator: str
    from_version: int
    to_version: int
    program_hash: str
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class AccountState:
    """Where one account of a migration stands (without its snapshot)."""

    address: str
    status: str
    attempts: int
    error: str | None
    signature: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An account's data read before its migration was sent."""

    address: str
    from_version: int
    data: bytes


@dataclass(frozen=True, slots=True)
class AccountOutcome:
    """What a batch found or did for one account.

    ``sent``: a migrate transaction carrying it was sent (counts as an attempt).
    """

    address: str
    status: str
    error: str | None = None
    signature: str | None = None
    sent: bool = False


@dataclass(frozen=True, slots=True)
class MigratedAccount:
    """An account a migration moved to a newer layout (for rollback checks)."""

    address: str
    migration_id: int
    migrator: str
    to_version: int
    program_hash: str


def migration_subject(migration_id: int) -> str:
    """The audit ``subject`` of everything that happens to a migration."""
    return f"migration:{migration_id}"


_RUN_CONTENT = ("cluster", "program_id", "migrator", "from_version", "to_version")


def start_migration(
    engine: Engine,
    *,
    key: str,
    cluster: str,
    program_id: str,
    migrator: str,
    from_version: int,
    to_version: int,
    program_hash: str,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> MigrationRunRecord:
    """Record a migration, or resume the one recorded under ``key``; idempotent.

    A new one is ``running`` (audit ``migration.started``). An existing one must describe
    the same migration (else ``RecordsError``); it becomes ``running`` again for this flow
    run (audit ``migration.resumed``), and keeps the ``program_hash`` it started with:
    that binary wrote the new layout. The same flow run again writes nothing.
    """
    content: dict[str, Any] = {
        "cluster": _text("cluster", cluster),
        "program_id": _text("program_id", program_id),
        "migrator": _text("migrator", migrator),
        "from_version": _int("from_version", from_version, minimum=0),
        "to_version": _int("to_version", to_version, minimum=0),
    }
    if content["from_version"] == content["to_version"]:
        raise InputError(
            f"a migration goes from one layout to another, not v{from_version} to v{to_version}"
        )
    key = _text("key", key)
    digest = _sha256_hex("program_hash", program_hash)

    def attempt(session: Session) -> MigrationRunRecord:
        run = session.scalar(select(MigrationRun).where(MigrationRun.key == key).with_for_update())
        if run is not None:
            differing = [n for n in _RUN_CONTENT if getattr(run, n) != content[n]]
            if differing:
                raise RecordsError(
                    f"migration key {key!r} is already recorded as migration {run.id} "
                    f"in {redacted(engine.url)} with a different {', '.join(differing)}; "
                    "a key must identify one migration. Check how the flow computes it."
                )
            if run.status == "running" and run.flow_run_id == flow_run_id:
                return MigrationRunRecord.model_validate(run)
            previous = run.status
            run.status, run.flow_run_id = "running", flow_run_id
            run.updated_at, run.finished_at = utcnow(), None
            _write_audit(
                session,
                actor=actor,
                action="migration.resumed",
                subject=migration_subject(run.id),
                details={"from": previous, "program_hash_now": digest},
                flow_run_id=flow_run_id,
            )
            return MigrationRunRecord.model_validate(run)
        run = MigrationRun(
            key=key,
            program_hash=digest,
            status="running",
            flow_run_id=flow_run_id,
            **content,
        )
        session.add(run)
        _flush_or_conflict(session)
        _write_audit(
            session,
            actor=actor,
            action="migration.started",
            subject=migration_subject(run.id),
            details={"key": key, "program_hash": digest, **content},
            flow_run_id=flow_run_id,
        )
        return MigrationRunRecord.model_validate(run)

    return retry_conflict(engine, attempt, f"migration key {key!r}")


def get_migration(engine: Engine, migration_id: int) -> MigrationRunRecord | None:
    with session_scope(engine) as session:
        run = session.get(MigrationRun, migration_id)
        return None if run is None else MigrationRunRecord.model_validate(run)


def get_migration_by_key(engine: Engine, key: str) -> MigrationRunRecord | None:
    with session_scope(engine) as session:
        run = session.scalar(select(MigrationRun).where(MigrationRun.key == key))
        return None if run is None else MigrationRunRecord.model_validate(run)


def finish_migration(
    engine: Engine,
    migration_id: int,
    status: str,
    *,
    details: Mapping[str, Any] | None = None,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> MigrationRunRecord:
    """Close a migration run: ``completed`` (every account verified), ``incomplete``
    (some failed: rerun with retry-failed) or ``failed`` (verification mismatches).
    Audit ``migration.finished`` with the account counts."""
    status = _choice("status", status, MIGRATION_STATUSES)
    with session_scope(engine) as session:
        run = _lock_run(session, engine, migration_id)
        counts = _counts(session, migration_id)
        previous = run.status
        run.status, run.updated_at = status, utcnow()
        run.finished_at = None if status == "running" else run.updated_at
        _write_audit(
            session,
            actor=actor,
            action="migration.finished",
            subject=migration_subject(migration_id),
            details={"from": previous, "to": status, "accounts": counts, **(details or {})},
            flow_run_id=flow_run_id,
        )
        return MigrationRunRecord.model_validate(run)


def record_snapshots(
    engine: Engine,
    migration_id: int,
    snapshots: Sequence[Snapshot],
    *,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> int:
    """Add accounts to a migration, ``pending``, with their pre-migration data; idempotent.

    Accounts already in the migration keep their first snapshot (taken before anything
    was sent for them). Returns how many were new. Audit ``migration.snapshots``.
    """
    rows: dict[str, Snapshot] = {}
    for snap in snapshots:
        address = _text("address", snap.address)
        if not isinstance(snap.data, bytes | bytearray) or not snap.data:
            raise InputError(f"snapshot of {address} holds no data")
        _int("from_version", snap.from_version, minimum=0)
        rows.setdefault(address, snap)
    if not rows:
        return 0

    def attempt(session: Session) -> int:
        _lock_run(session, engine, migration_id, lock=False)
        known = _existing_addresses(session, migration_id, rows)
        now = utcnow()
        new = [
            {
                "migration_id": migration_id,
                "address": address,
                "status": "pending",
                "from_version": snap.from_version,
                "snapshot": bytes(snap.data),
                "snapshot_sha256": hashlib.sha256(snap.data).hexdigest(),
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for address, snap in rows.items()
            if address not in known
        ]
        if not new:
            return 0
        try:
            session.execute(insert(MigrationAccount), new)
        except IntegrityError:  # a concurrent insert of the same address
            raise _Conflict from None
        _write_audit(
            session,
            actor=actor,
            action="migration.snapshots",
            subject=migration_subject(migration_id),
            details={"count": len(new)},
            flow_run_id=flow_run_id,
        )
        return len(new)

    return retry_conflict(engine, attempt, f"snapshots of migration {migration_id}")


def account_states(
    engine: Engine, migration_id: int, addresses: Iterable[str] | None = None
) -> dict[str, AccountState]:
    """Status of the migration's accounts (all, or those of ``addresses`` it knows)."""
    columns = (
        MigrationAccount.address,
        MigrationAccount.status,
        MigrationAccount.attempts,
        MigrationAccount.error,
        MigrationAccount.signature,
    )
    query = select(*columns).where(MigrationAccount.migration_id == migration_id)
    with session_scope(engine) as session:
        if addresses is None:
            rows = session.execute(query).all()
        else:
            wanted = list(dict.fromkeys(addresses))
            rows = []
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows += session.execute(query.where(MigrationAccount.address.in_(chunk))).all()
        return {row.address: AccountState(*row) for row in rows}


def snapshots(engine: Engine, migration_id: int, addresses: Iterable[str]) -> dict[str, bytes]:
    """The pre-migration data of these accounts (those the migration knows)."""
    wanted = list(dict.fromkeys(addresses))
    found: dict[str, bytes] = {}
    query = select(MigrationAccount.address, MigrationAccount.snapshot).where(
        MigrationAccount.migration_id == migration_id
    )
    with session_scope(engine) as session:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            for address, data in session.execute(query.where(MigrationAccount.address.in_(chunk))):
                found[address] = bytes(data)
    return found


# pending -> migrated -> verified; anything may fail; a failed account may migrate on
# a retry; nothing goes back to pending, and a verified account is not "unverified" by
# a later pass that merely sees it migrated.
_ALLOWED = {
    "pending": {"pending", "migrated", "verified", "failed"},
    "failed": {"failed", "migrated", "verified"},
    "migrated": {"migrated", "verified", "failed"},
    "verified": {"verified", "failed"},
}


def record_outcomes(
    engine: Engine,
    migration_id: int,
    outcomes: Sequence[AccountOutcome],
    *,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> dict[str, int]:
    """Record what a batch found or did, per account; returns changed rows per status.

    Every account must have its snapshot already (``RecordsError`` otherwise: nothing is
    sent for an account before its snapshot is safe). Idempotent: an outcome equal to the
    recorded state, not sent again, writes nothing. ``migrated`` on a ``verified`` account
    changes nothing. A change moves the run's ``updated_at`` (its last progress). Audit
    ``migration.accounts`` (counts, and the first failures).
    """
    by_address: dict[str, AccountOutcome] = {}
    for outcome in outcomes:
        _text("address", outcome.address)
        _choice("status", outcome.status, ACCOUNT_STATUSES)
        if outcome.status == "failed" and not (outcome.error and outcome.error.strip()):
            raise InputError(f"failed outcome of {outcome.address} needs an error")
        by_address[outcome.address] = outcome
    if not by_address:
        return {}
    with session_scope(engine) as session:
        _lock_run(session, engine, migration_id, lock=False)
        rows = _rows_for_update(session, migration_id, by_address)
        missing = sorted(set(by_address) - set(rows))
        if missing:
            raise RecordsError(
                f"migration {migration_id} has no snapshot of {', '.join(missing[:5])}"
                + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                + "; accounts are snapshotted before anything is sent for them."
            )
        now = utcnow()
        changed: dict[str, int] = {}
        failures: dict[str, str] = {}
        updates: list[dict[str, Any]] = []
        for address, outcome in by_address.items():
            row = rows[address]
            status = outcome.status
            if status not in _ALLOWED[row.status]:
                status = row.status  # e.g. "migrated" seen again on a verified account
            error = outcome.error if status == "failed" else None
            signature = outcome.signature or row.signature
            if (
                not outcome.sent
                and status == row.status
                and error == row.error
                and signature == row.signature
            ):
                continue
            migrated_at = row.migrated_at
            if status in ("migrated", "verified") and migrated_at is None:
                migrated_at = now
            updates.append(
                {
                    "row_id": row.id,
                    "new_status": status,
                    "new_error": error,
                    "new_signature": signature,
                    "new_attempts": row.attempts + (1 if outcome.sent else 0),
                    "new_migrated_at": migrated_at,
                    "new_verified_at": now if status == "verified" else row.verified_at,
                    "new_updated_at": now,
                }
            )
            changed[status] = changed.get(status, 0) + 1
            if error is not None:
                failures[address] = error
        if updates:
            # One executemany by primary key: a batch is one statement, not 100 ORM flushes.
            session.connection().execute(_UPDATE_ACCOUNT, updates)
            # The run's updated_at is its last progress (the daily health check's "stuck").
            session.connection().execute(
                update(MigrationRun).where(MigrationRun.id == migration_id).values(updated_at=now)
            )
            _write_audit(
                session,
                actor=actor,
                action="migration.accounts",
                subject=migration_subject(migration_id),
                details={
                    "changed": changed,
                    "failed": dict(list(failures.items())[:_AUDIT_FAILURES]),
                },
                flow_run_id=flow_run_id,
            )
        return changed


def migration_counts(engine: Engine, migration_id: int) -> dict[str, int]:
    """Accounts of a migration per status (every status present, zeros included)."""
    with session_scope(engine) as session:
        return _counts(session, migration_id)


def failed_accounts(
    engine: Engine, migration_id: int, limit: int | None = None
) -> list[AccountState]:
    """The migration's failed accounts (the first ``limit``), with their errors, by address."""
    query = (
        select(
            MigrationAccount.address,
            MigrationAccount.status,
            MigrationAccount.attempts,
            MigrationAccount.error,
            MigrationAccount.signature,
        )
        .where(MigrationAccount.migration_id == migration_id, MigrationAccount.status == "failed")
        .order_by(MigrationAccount.address)
        .limit(limit)
    )
    with session_scope(engine) as session:
        return [AccountState(*row) for row in session.execute(query)]


def account_addresses(
    engine: Engine,
    migration_id: int,
    statuses: Iterable[str],
    *,
    after: str | None = None,
    limit: int = 100,
) -> list[str]:
    """A page of the migration's accounts in ``statuses``, by address, after ``after``:
    a pass over a million accounts reads them a page at a time, never all at once."""
    query = select(MigrationAccount.address).where(
        MigrationAccount.migration_id == migration_id,
        MigrationAccount.status.in_(list(statuses)),
    )
    if after is not None:
        query = query.where(MigrationAccount.address > after)
    with session_scope(engine) as session:
        return list(session.scalars(query.order_by(MigrationAccount.address).limit(limit)))


def migrated_accounts(
    engine: Engine, cluster: str, program_id: str, *, written_by_other_than: str
) -> list[MigratedAccount]:
    """Accounts of ``program_id`` that migrations moved to a layout written by a binary
    other than ``written_by_other_than`` (a rollback target): the ones it may not read."""
    query = (
        select(
            MigrationAccount.address,
            MigrationRun.id,
            MigrationRun.migrator,
            MigrationRun.to_version,
            MigrationRun.program_hash,
        )
        .join(MigrationRun, MigrationAccount.migration_id == MigrationRun.id)
        .where(
            MigrationRun.cluster == cluster,
            MigrationRun.program_id == program_id,
            MigrationRun.program_hash != written_by_other_than.lower(),
            MigrationAccount.status.in_(("migrated", "verified")),
        )
        .order_by(MigrationRun.id, MigrationAccount.address)
    )
    with session_scope(engine) as session:
        return [MigratedAccount(*row) for row in session.execute(query)]


# --------------------------------------------------------------------------- helpers


def _lock_run(
    session: Session, engine: Engine, migration_id: int, *, lock: bool = True
) -> MigrationRun:
    """The run, locked unless ``lock`` is False (batches of accounts lock their own rows,
    so concurrent batches of one migration do not queue behind each other)."""
    if isinstance(migration_id, bool) or not isinstance(migration_id, int):
        raise InputError(f"migration_id must be an integer, got {migration_id!r}")
    query = select(MigrationRun).where(MigrationRun.id == migration_id)
    run = session.scalar(query.with_for_update() if lock else query)
    if run is None:
        raise RecordsError(
            f"no migration {migration_id} in the records database at {redacted(engine.url)}"
        )
    return run


def _existing_addresses(session: Session, migration_id: int, addresses: Iterable[str]) -> set[str]:
    wanted = list(addresses)
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        found.update(
            session.scalars(
                select(MigrationAccount.address).where(
                    MigrationAccount.migration_id == migration_id,
                    MigrationAccount.address.in_(chunk),
                )
            )
        )
    return found


def _rows_for_update(
    session: Session, migration_id: int, addresses: Iterable[str]
) -> dict[str, Any]:
    """The accounts' current state (plain rows, locked on PostgreSQL), by address."""
    wanted = list(addresses)
    rows: dict[str, Any] = {}
    columns = (
        MigrationAccount.id,
        MigrationAccount.address,
        MigrationAccount.status,
        MigrationAccount.error,
        MigrationAccount.signature,
        MigrationAccount.attempts,
        MigrationAccount.migrated_at,
        MigrationAccount.verified_at,
    )
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        for row in session.execute(
            select(*columns)
            .where(
                MigrationAccount.migration_id == migration_id,
                MigrationAccount.address.in_(chunk),
            )
            .with_for_update()
        ):
            rows[row.address] = row
    return rows


_UPDATE_ACCOUNT = (
    update(MigrationAccount)
    .where(MigrationAccount.id == bindparam("row_id"))
    .values(
        status=bindparam("new_status"),
        error=bindparam("new_error"),
        signature=bindparam("new_signature"),
        attempts=bindparam("new_attempts"),
        migrated_at=bindparam("new_migrated_at"),
        verified_at=bindparam("new_verified_at"),
        updated_at=bindparam("new_updated_at"),
    )
)


def _counts(session: Session, migration_id: int) -> dict[str, int]:
    counts = dict.fromkeys(ACCOUNT_STATUSES, 0)
    for status, count in session.execute(
        select(MigrationAccount.status, func.count())
        .where(MigrationAccount.migration_id == migration_id)
        .group_by(MigrationAccount.status)
    ):
        counts[status] = count
    return counts

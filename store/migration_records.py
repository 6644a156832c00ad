"""Repository of the migration, rollback and kill-switch runbooks.

The conventions of ``store.records`` hold here too: every function takes an ``Engine``
and runs one transaction; a change writes its ``AuditEvent`` in that transaction (with
the same helper); results are frozen dataclasses; *idempotent* functions may be retried
and then write nothing more; bad arguments raise ``InputError``, missing rows and
database failures ``RecordsError``.

Migrations write in batches (one transaction per batch of accounts, one audit row per
batch), so a 10,000-account migration costs a few hundred short transactions, not tens
of thousands.
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

from core.errors import ApprovalError, InputError, ProposalClosed, RecordsError
from store.db import redacted, session_scope
from store.migration_models import (
    ACCOUNT_STATUSES,
    ALL_PROGRAMS,
    MIGRATION_STATUSES,
    KillSwitch,
    MigrationAccount,
    MigrationRun,
    ProgramArchive,
)
from store.models import TERMINAL_STATUSES, utcnow
from store.records import (
    DEFAULT_ACTOR,
    _choice,
    _Conflict,
    _flush_or_conflict,
    _int,
    _lock_proposal,
    _sha256_hex,
    _text,
    _utc,
    _utc_or_none,
    _write_audit,
    program_subject,
    proposal_subject,
)

RELEASE_KIND = "kill-switch-release"
# Stay well under SQLite's bound-parameter limit in IN (...) lists.
_IN_CHUNK = 500
# Audit rows name at most this many failed accounts; the table has them all.
_AUDIT_FAILURES = 20


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class MigrationRunRecord:
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


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    id: int
    cluster: str
    program_id: str
    sha256: str
    data: bytes
    size: int
    slot: int
    authority: str | None
    archived_at: datetime
    last_archived_at: datetime
    proposal_id: int | None
    flow_run_id: str | None


@dataclass(frozen=True, slots=True)
class KillSwitchRecord:
    cluster: str
    program_id: str
    engaged: bool
    reason: str
    actor: str
    changed_at: datetime
    release_proposal_id: int | None
    flow_run_id: str | None

    @property
    def scope(self) -> str:
        """What it covers, in words."""
        if self.program_id == ALL_PROGRAMS:
            return f"every program on {self.cluster}"
        return f"program {self.program_id} on {self.cluster}"


def migration_subject(migration_id: int) -> str:
    """The audit ``subject`` of everything that happens to a migration."""
    return f"migration:{migration_id}"


def kill_switch_subject(cluster: str, program_id: str) -> str:
    """The audit ``subject`` of a kill switch (``program_id`` ``*``: the whole cluster)."""
    return f"kill-switch:{cluster}:{program_id}"


# ------------------------------------------------------------------------ migrations

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
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                run = session.scalar(
                    select(MigrationRun).where(MigrationRun.key == key).with_for_update()
                )
                if run is not None:
                    differing = [n for n in _RUN_CONTENT if getattr(run, n) != content[n]]
                    if differing:
                        raise RecordsError(
                            f"migration key {key!r} is already recorded as migration {run.id} "
                            f"in {redacted(engine.url)} with a different {', '.join(differing)}; "
                            "a key must identify one migration. Check how the flow computes it."
                        )
                    if run.status == "running" and run.flow_run_id == flow_run_id:
                        return _run_record(run)
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
                    return _run_record(run)
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
                return _run_record(run)
        except _Conflict:
            continue
    raise RecordsError(
        f"migration key {key!r} kept conflicting in {redacted(engine.url)}; retry the task."
    )


def get_migration(engine: Engine, migration_id: int) -> MigrationRunRecord | None:
    with session_scope(engine) as session:
        run = session.get(MigrationRun, migration_id)
        return None if run is None else _run_record(run)


def get_migration_by_key(engine: Engine, key: str) -> MigrationRunRecord | None:
    with session_scope(engine) as session:
        run = session.scalar(select(MigrationRun).where(MigrationRun.key == key))
        return None if run is None else _run_record(run)


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
        return _run_record(run)


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
    for _ in range(2):
        try:
            with session_scope(engine) as session:
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
        except _Conflict:
            continue
    raise RecordsError(
        f"snapshots of migration {migration_id} kept conflicting in {redacted(engine.url)}; "
        "retry the task."
    )


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


def failed_accounts(engine: Engine, migration_id: int) -> list[AccountState]:
    """The migration's failed accounts, with their errors, by address."""
    states = account_states(engine, migration_id)
    return sorted((s for s in states.values() if s.status == "failed"), key=lambda s: s.address)


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


# -------------------------------------------------------------------------- archives


def archive_program(
    engine: Engine,
    *,
    cluster: str,
    program_id: str,
    sha256: str,
    data: bytes,
    slot: int,
    authority: str | None,
    proposal_id: int | None = None,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> ArchiveRecord:
    """Keep a program binary before an upgrade replaces it; idempotent.

    ``sha256`` must be the verifiable-build hash of ``data`` (checked). A binary archived
    before is kept once; archiving it again for another proposal moves its
    ``last_archived_at`` (the rollback default is the newest). Audit ``program.archived``.
    """
    cluster = _text("cluster", cluster)
    program_id = _text("program_id", program_id)
    digest = _sha256_hex("sha256", sha256)
    if not isinstance(data, bytes | bytearray) or not data:
        raise InputError("the archived program holds no bytes")
    actual = hashlib.sha256(bytes(data).rstrip(b"\x00")).hexdigest()
    if actual != digest:
        raise InputError(f"archived bytes hash to {actual}, not {digest}: refusing to keep them")
    slot = _int("slot", slot, minimum=0)
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                row = session.scalar(
                    select(ProgramArchive)
                    .where(
                        ProgramArchive.cluster == cluster,
                        ProgramArchive.program_id == program_id,
                        ProgramArchive.sha256 == digest,
                    )
                    .with_for_update()
                )
                now = utcnow()
                if row is not None:
                    if proposal_id is None or row.proposal_id == proposal_id:
                        return _archive_record(row)
                    row.proposal_id, row.last_archived_at = proposal_id, now
                    row.flow_run_id = flow_run_id
                    again = True
                else:
                    row = ProgramArchive(
                        cluster=cluster,
                        program_id=program_id,
                        sha256=digest,
                        data=bytes(data),
                        size=len(data),
                        slot=slot,
                        authority=authority,
                        archived_at=now,
                        last_archived_at=now,
                        proposal_id=proposal_id,
                        flow_run_id=flow_run_id,
                    )
                    session.add(row)
                    _flush_or_conflict(session)
                    again = False
                _write_audit(
                    session,
                    actor=actor,
                    action="program.archived",
                    subject=program_subject(cluster, program_id),
                    details={
                        "archive_id": row.id,
                        "sha256": digest,
                        "size": row.size,
                        "slot": slot,
                        "proposal_id": proposal_id,
                        "archived_before": again,
                    },
                    flow_run_id=flow_run_id,
                )
                return _archive_record(row)
        except _Conflict:
            continue
    raise RecordsError(
        f"the archive of {program_id} ({digest}) kept conflicting in {redacted(engine.url)}; "
        "retry the task."
    )


def get_archive(engine: Engine, cluster: str, program_id: str, sha256: str) -> ArchiveRecord | None:
    """The archived binary of a program with this hash, or None."""
    with session_scope(engine) as session:
        row = session.scalar(
            select(ProgramArchive).where(
                ProgramArchive.cluster == cluster,
                ProgramArchive.program_id == program_id,
                ProgramArchive.sha256 == sha256.strip().lower(),
            )
        )
        return None if row is None else _archive_record(row)


def latest_archive(
    engine: Engine, cluster: str, program_id: str, *, excluding: str | None = None
) -> ArchiveRecord | None:
    """The binary most recently archived before an upgrade (other than ``excluding``)."""
    query = select(ProgramArchive).where(
        ProgramArchive.cluster == cluster, ProgramArchive.program_id == program_id
    )
    if excluding is not None:
        query = query.where(ProgramArchive.sha256 != excluding.strip().lower())
    query = query.order_by(ProgramArchive.last_archived_at.desc(), ProgramArchive.id.desc())
    with session_scope(engine) as session:
        row = session.scalars(query.limit(1)).first()
        return None if row is None else _archive_record(row)


# ----------------------------------------------------------------------- kill switch


def engage_kill_switch(
    engine: Engine,
    cluster: str,
    program_id: str,
    *,
    reason: str,
    actor: str,
    flow_run_id: str | None = None,
) -> KillSwitchRecord:
    """Stop every runbook write to ``program_id`` (``*``: every program of ``cluster``).

    Takes effect at once, without a sign-off: pulling it must be quick. Idempotent: an
    engaged switch is returned unchanged (its first reason stays). Audit
    ``kill_switch.engaged``.
    """
    cluster = _text("cluster", cluster)
    program_id = _text("program_id", program_id)
    reason = _text("reason", reason)
    actor = _text("actor", actor)
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                row = _lock_switch(session, cluster, program_id)
                if row is not None and row.engaged:
                    return _switch_record(row)
                if row is None:
                    row = KillSwitch(cluster=cluster, program_id=program_id)
                    session.add(row)
                row.engaged, row.reason, row.actor = True, reason, actor
                row.changed_at, row.flow_run_id = utcnow(), flow_run_id
                _flush_or_conflict(session)
                _write_audit(
                    session,
                    actor=actor,
                    action="kill_switch.engaged",
                    subject=kill_switch_subject(cluster, program_id),
                    details={"reason": reason},
                    flow_run_id=flow_run_id,
                )
                return _switch_record(row)
        except _Conflict:
            continue
    raise RecordsError(f"the kill switch of {program_id} kept conflicting; retry the task.")


def release_kill_switch(
    engine: Engine,
    cluster: str,
    program_id: str,
    *,
    proposal_id: int,
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> KillSwitchRecord:
    """Release an engaged kill switch, on the authority of a signed-off proposal.

    The proposal must be a ``kill-switch-release`` of this switch whose sign-off threshold
    was met; it becomes ``executed`` in the same transaction. Idempotent for that
    proposal. Audit ``kill_switch.released`` (and ``proposal.status``).
    """
    with session_scope(engine) as session:
        proposal = _lock_proposal(session, engine, proposal_id)
        if (proposal.kind, proposal.cluster, proposal.program_id) != (
            RELEASE_KIND,
            cluster,
            program_id,
        ):
            raise InputError(
                f"proposal {proposal_id} is a {proposal.kind} of {proposal.program_id} on "
                f"{proposal.cluster}, not a {RELEASE_KIND} of {program_id} on {cluster}"
            )
        row = _lock_switch(session, cluster, program_id)
        if row is not None and not row.engaged and row.release_proposal_id == proposal_id:
            return _switch_record(row)
        if row is None or not row.engaged:
            raise InputError(f"the kill switch of {program_id} on {cluster} is not engaged")
        if proposal.status in TERMINAL_STATUSES:
            raise ProposalClosed(
                f"proposal {proposal_id} is {proposal.status}; it cannot release the kill switch"
            )
        if proposal.threshold_met_at is None:
            raise ApprovalError(
                f"proposal {proposal_id} has not met its sign-off threshold: the kill switch "
                "stays engaged until enough members sign its release"
            )
        now = utcnow()
        engaged_since, reason = row.changed_at, row.reason
        row.engaged, row.actor, row.changed_at = False, actor, now
        row.release_proposal_id, row.flow_run_id = proposal_id, flow_run_id
        previous = proposal.status
        proposal.status = "executed"
        if proposal.executed_at is None:
            proposal.executed_at = now
        _write_audit(
            session,
            actor=actor,
            action="proposal.status",
            subject=proposal_subject(proposal_id),
            details={"from": previous, "to": "executed", "reason": "kill switch released"},
            flow_run_id=flow_run_id,
        )
        _write_audit(
            session,
            actor=actor,
            action="kill_switch.released",
            subject=kill_switch_subject(cluster, program_id),
            details={
                "proposal_id": proposal_id,
                "engaged_since": _utc(engaged_since).isoformat(),
                "engaged_for": reason,
            },
            flow_run_id=flow_run_id,
        )
        return _switch_record(row)


def get_kill_switch(engine: Engine, cluster: str, program_id: str) -> KillSwitchRecord | None:
    """The recorded switch of exactly this scope, engaged or not (None: never used)."""
    with session_scope(engine) as session:
        row = session.get(KillSwitch, (cluster, program_id))
        return None if row is None else _switch_record(row)


def engaged_kill_switches(engine: Engine, cluster: str, program_id: str) -> list[KillSwitchRecord]:
    """The engaged switches that stop writes to ``program_id``: its own and the cluster's."""
    with session_scope(engine) as session:
        rows = session.scalars(
            select(KillSwitch).where(
                KillSwitch.cluster == cluster,
                KillSwitch.program_id.in_((program_id, ALL_PROGRAMS)),
                KillSwitch.engaged.is_(True),
            )
        ).all()
        return [_switch_record(row) for row in rows]


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


def _lock_switch(session: Session, cluster: str, program_id: str) -> KillSwitch | None:
    return session.scalar(
        select(KillSwitch)
        .where(KillSwitch.cluster == cluster, KillSwitch.program_id == program_id)
        .with_for_update()
    )


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


def _run_record(r: MigrationRun) -> MigrationRunRecord:
    return MigrationRunRecord(
        id=r.id,
        key=r.key,
        cluster=r.cluster,
        program_id=r.program_id,
        migrator=r.migrator,
        from_version=r.from_version,
        to_version=r.to_version,
        program_hash=r.program_hash,
        status=r.status,
        created_at=_utc(r.created_at),
        updated_at=_utc(r.updated_at),
        finished_at=_utc_or_none(r.finished_at),
        flow_run_id=r.flow_run_id,
    )


def _archive_record(a: ProgramArchive) -> ArchiveRecord:
    return ArchiveRecord(
        id=a.id,
        cluster=a.cluster,
        program_id=a.program_id,
        sha256=a.sha256,
        data=bytes(a.data),
        size=a.size,
        slot=a.slot,
        authority=a.authority,
        archived_at=_utc(a.archived_at),
        last_archived_at=_utc(a.last_archived_at),
        proposal_id=a.proposal_id,
        flow_run_id=a.flow_run_id,
    )


def _switch_record(k: KillSwitch) -> KillSwitchRecord:
    return KillSwitchRecord(
        cluster=k.cluster,
        program_id=k.program_id,
        engaged=k.engaged,
        reason=k.reason,
        actor=k.actor,
        changed_at=_utc(k.changed_at),
        release_proposal_id=k.release_proposal_id,
        flow_run_id=k.flow_run_id,
    )


__all__ = [
    "RELEASE_KIND",
    "AccountOutcome",
    "AccountState",
    "ArchiveRecord",
    "KillSwitchRecord",
    "MigratedAccount",
    "MigrationRunRecord",
    "Snapshot",
    "account_states",
    "archive_program",
    "engage_kill_switch",
    "engaged_kill_switches",
    "failed_accounts",
    "finish_migration",
    "get_archive",
    "get_kill_switch",
    "get_migration",
    "get_migration_by_key",
    "kill_switch_subject",
    "latest_archive",
    "migrated_accounts",
    "migration_counts",
    "migration_subject",
    "record_outcomes",
    "record_snapshots",
    "release_kill_switch",
    "start_migration",
]

"""Records of the rollback runbook: the program binaries upgrades replaced, kept to roll
back to (the newest one archived is the rollback default)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.errors import InputError
from core.hashes import verifiable_hash
from store.db import session_scope
from store.models import ProgramArchive, utcnow
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _flush_or_conflict,
    _int,
    _sha256_hex,
    _text,
    _write_audit,
    program_subject,
    retry_conflict,
)


class ArchiveRecord(Record):
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
    actual = verifiable_hash(data)
    if actual != digest:
        raise InputError(f"archived bytes hash to {actual}, not {digest}: refusing to keep them")
    slot = _int("slot", slot, minimum=0)

    def attempt(session: Session) -> ArchiveRecord:
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
                return ArchiveRecord.model_validate(row)
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
        return ArchiveRecord.model_validate(row)

    return retry_conflict(engine, attempt, f"the archive of {program_id} ({digest})")


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
        return None if row is None else ArchiveRecord.model_validate(row)


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
        return None if row is None else ArchiveRecord.model_validate(row)

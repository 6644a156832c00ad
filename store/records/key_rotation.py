"""Records of the key-rotation runbook: the key registry (with rotation reminders) and
every transfer of a program's upgrade authority.

Rows here never hold a foreign key to ``proposals``: housekeeping removes executed
proposals after 90 days, and the rotation history must outlive them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.errors import InputError, RecordsError
from store.db import session_scope
from store.models import KEY_ROLES, KeyRotation, ManagedKey
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _aware,
    _choice,
    _int,
    _text,
    _write_audit,
    program_subject,
)


class KeyRecord(Record):
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


class RotationRecord(Record):
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


def key_subject(cluster: str, pubkey: str) -> str:
    """The audit ``subject`` of a registered key."""
    return f"key:{cluster}:{pubkey}"


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
        return KeyRecord.model_validate(row)


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
        return KeyRecord.model_validate(row)


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
        return [KeyRecord.model_validate(k) for k in session.scalars(query).all()]


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
                return RotationRecord.model_validate(existing)
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
        return RotationRecord.model_validate(rotation)


def rotations(engine: Engine, program_id: str | None = None) -> list[RotationRecord]:
    """Authority transfers, oldest first."""
    query = select(KeyRotation).order_by(KeyRotation.at, KeyRotation.id)
    if program_id is not None:
        query = query.where(KeyRotation.program_id == program_id)
    with session_scope(engine) as session:
        return [RotationRecord.model_validate(r) for r in session.scalars(query).all()]


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

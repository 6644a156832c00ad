"""What every repository module of ``store.records`` stands on: the record base class,
the one insert-once-with-audit helper, the audit writer and argument checks.

- :class:`Record`: a pydantic model read from a row by attribute
  (``XRecord.model_validate(row)``), frozen, datetimes in UTC.
- :func:`insert_once`: the shape "find the row an earlier call wrote, else insert it and
  its audit row in the same transaction; when a unique constraint refuses the insert (a
  concurrent run wrote first), run once more and return that run's row".
- :func:`retry_conflict`: the same retry for writes that are not a plain insert (upserts).
- ``_write_audit``: adds the audit row to the caller's transaction.
- ``_text``, ``_choice``, ``_int``, ``_sha256_hex``, ``_aware``...: ``InputError`` messages
  that name the field and what is expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import InputError, RecordsError
from store.db import redacted, session_scope
from store.models import AuditEvent, Base, utcnow

DEFAULT_ACTOR = "runbooks"
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")

R = TypeVar("R", bound="Record")
T = TypeVar("T")


class Record(BaseModel):
    """A row as a plain value, safe to use after its session has closed, to pass between
    Prefect tasks and to compare in tests: ``XRecord.model_validate(row)`` reads it by
    attribute from an ORM object or a result row.

    Datetimes come out in UTC: rows just written still hold the caller's (aware) value,
    loaded ones are UTC already (``store.models.UTCDateTime``); a naive value is UTC wall
    time, as SQLite stores it.
    """

    model_config = ConfigDict(from_attributes=True, frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _in_utc(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


def program_subject(cluster: str, program_id: str) -> str:
    """The audit ``subject`` of a program: its recorded hash, archives, authority."""
    return f"program:{cluster}:{program_id}"


# ------------------------------------------------------------------ insert once, audit


class _Conflict(Exception):
    """A unique constraint refused an insert that a concurrent transaction made first."""


def _flush_or_conflict(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise _Conflict from None


def retry_conflict(engine: Engine, attempt: Callable[[Session], T], what: str) -> T:
    """``attempt`` in one transaction; run again once when it raised ``_Conflict``.

    A concurrent insert of the same key makes the first attempt fail on the unique
    constraint, and the second then finds the row the other run wrote. ``what`` names the
    row in the ``RecordsError`` raised when the second attempt conflicts too.
    """
    for _ in range(2):
        try:
            with session_scope(engine) as session:
                return attempt(session)
        except _Conflict:
            continue
    raise RecordsError(
        f"{what} kept conflicting in {redacted(engine.url)}; "
        "retry the task, and report it if it persists."
    )


def insert_once(
    engine: Engine,
    record: type[R],
    *,
    find: Callable[[Session], Base | None],
    new: Callable[[], Base],
    audit: Callable[[Any], Mapping[str, Any]],
    what: str,
) -> R:
    """Insert a row once, with its audit row in the same transaction; idempotent.

    ``find`` returns the row an earlier call (a retry, a racing run) wrote, which is then
    returned with nothing written (``find`` may raise when that row says otherwise).
    Else the row ``new`` builds is inserted and ``audit(row)`` gives the keyword arguments
    of its ``_write_audit`` (the row has its id by then). Returns ``record`` of the row.
    """

    def attempt(session: Session) -> R:
        row = find(session)
        if row is None:
            row = new()
            session.add(row)
            _flush_or_conflict(session)
            _write_audit(session, **audit(row))
        return record.model_validate(row)

    return retry_conflict(engine, attempt, what)


def _write_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None,
    flow_run_id: str | None,
    at: datetime | None = None,
) -> AuditEvent:
    """Add the audit row to the caller's transaction (it commits or rolls back with it)."""
    payload = dict(details or {})
    try:
        # Refuse here, with a clear message, what the JSON column would refuse at commit.
        payload = json.loads(json.dumps(payload))
    except (TypeError, ValueError) as exc:
        raise InputError(f"audit details for {action} are not JSON-serialisable: {exc}") from None
    event = AuditEvent(
        at=at or utcnow(),
        actor=actor,
        action=action,
        subject=subject,
        details=payload,
        flow_run_id=flow_run_id,
    )
    session.add(event)
    session.flush()
    return event


# Validation: InputError messages name the field and what is expected.


def _utc(value: datetime) -> datetime:
    # Objects just written still hold the caller's value; loaded ones are UTC already.
    return value.astimezone(UTC)


def _aware(name: str, value: datetime | None) -> datetime:
    """``value`` in UTC, or now when None."""
    return utcnow() if value is None else _check_aware(name, value)


def _aware_or_none(name: str, value: datetime | None) -> datetime | None:
    return None if value is None else _check_aware(name, value)


def _check_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InputError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(
            f"{name} {value.isoformat()} has no timezone; pass an aware datetime "
            "(e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC)


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    return value


def _text(name: str, value: object) -> str:
    text = _string(name, value)
    if not text.strip():
        raise InputError(f"{name} must not be empty")
    return text


def _optional_text(name: str, value: object) -> str | None:
    return None if value is None else _text(name, value)


def _choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return value


def _sha256_hex(name: str, value: object) -> str:
    text = _string(name, value).strip().lower()
    if not _HEX_SHA256.fullmatch(text):
        raise InputError(
            f"{name} must be a SHA-256 in hex (64 characters 0-9a-f), got {value!r}; "
            "use the hash solana-verify prints"
        )
    return text

"""The records schema's foundation: the declarative ``Base``, its UTC datetimes, and the
one column every runbook's rows share.

Plain SQLAlchemy 2 declarative models, portable across SQLite and PostgreSQL:

- JSON columns use ``sqlalchemy.JSON`` (TEXT on SQLite, ``json`` on PostgreSQL).
- Datetimes go through :class:`UTCDateTime`: callers pass timezone-aware datetimes, the
  database holds UTC (``timestamptz`` on PostgreSQL, ISO text without offset on SQLite, so
  text order is time order), and reads always come back aware, in UTC, on both.
- Closed vocabularies (statuses, decisions, outcomes) are checked by the repository
  (``store.records``) rather than by CHECK constraints, so adding a value is a code
  change, not a table rebuild on SQLite.
- :class:`Audited` adds ``flow_run_id``, the Prefect flow run that wrote the row, to
  every table whose rows a runbook writes.

The schema itself is created by the Alembic migrations in ``store/migrations``, never by
``metadata.create_all``; a test checks that models and migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Dialect, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: Alembic's batch mode on SQLite (table copy) and later
# migrations need to refer to constraints by name on both backends.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, stored the same way on SQLite and PostgreSQL.

    SQLite has no timezone type: SQLAlchemy would silently drop the offset of an aware
    datetime and hand back naive values. Normalising to UTC on the way in and re-attaching
    UTC on the way out gives both backends the same behaviour. Naive datetimes are refused:
    their meaning depends on the machine that made them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as text without offset: always UTC, so lexical order is time order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL answers in the session's TimeZone; report UTC whatever that is.
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every datetime column is a UTCDateTime unless a column says otherwise.
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - read by SQLAlchemy


class Audited:
    """The column every runbook's rows carry: the flow run that wrote them (None when
    written outside a flow run, e.g. by hand or by a test)."""

    flow_run_id: Mapped[str | None] = mapped_column(String)

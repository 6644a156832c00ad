"""Records of the daily health check: its reports (Alembic ``operations``) and the last
known hash of each program (``0001``; the upgrade runbook records it too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base, utcnow

HEALTH_LEVELS: tuple[str, ...] = ("info", "warning", "critical")


class HealthReport(Base):
    """One daily health run: its worst level and every finding.

    Not ``Audited``: its ``flow_run_id`` is unique (a retried task finds its report).
    """

    __tablename__ = "health_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    level: Mapped[str] = mapped_column(String)
    # The slot the cluster reported (None when the RPC was unreachable).
    slot: Mapped[int | None] = mapped_column(BigInteger)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # A retried "record report" task finds the row its run already wrote.
    flow_run_id: Mapped[str | None] = mapped_column(String, unique=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String)
    acknowledged_at: Mapped[datetime | None]


class ProgramHash(Base):
    """The last known verifiable-build hash of a program, per cluster (for health checks)."""

    __tablename__ = "program_hashes"

    cluster: Mapped[str] = mapped_column(String, primary_key=True)
    program_id: Mapped[str] = mapped_column(String, primary_key=True)
    hash: Mapped[str] = mapped_column(String)
    slot: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

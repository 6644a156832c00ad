"""Records of the kill-switch runbook (Alembic branch ``migration``): ``kill_switches``,
whether runbooks may write to a program (or a whole cluster)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Audited, Base, utcnow

# The kill switch of every program of a cluster.
ALL_PROGRAMS = "*"


class KillSwitch(Audited, Base):
    """Whether runbooks may write to a program (``program_id`` ``*``: the whole cluster).

    Its history is in ``audit_events`` (subject ``kill-switch:<cluster>:<program>``).
    """

    __tablename__ = "kill_switches"

    cluster: Mapped[str] = mapped_column(String, primary_key=True)
    program_id: Mapped[str] = mapped_column(String, primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The signed-off proposal (kind ``kill-switch-release``) that last released it; no
    # foreign key, as for archives.
    release_proposal_id: Mapped[int | None] = mapped_column(Integer)

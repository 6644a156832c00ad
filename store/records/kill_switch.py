"""Records of the kill-switch runbook: whether runbooks may write to a program (or to
every program of a cluster), engaged at once and released only by a signed-off proposal.
Its history is in the audit log (``kill_switch_subject``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.errors import ApprovalError, InputError, ProposalClosed
from store.db import session_scope
from store.models import ALL_PROGRAMS, TERMINAL_STATUSES, KillSwitch, utcnow
from store.records._base import (
    DEFAULT_ACTOR,
    Record,
    _flush_or_conflict,
    _text,
    _utc,
    _write_audit,
    retry_conflict,
)
from store.records.proposals import lock_proposal, proposal_subject

RELEASE_KIND = "kill-switch-release"


class KillSwitchRecord(Record):
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


def kill_switch_subject(cluster: str, program_id: str) -> str:
    """The audit ``subject`` of a kill switch (``program_id`` ``*``: the whole cluster)."""
    return f"kill-switch:{cluster}:{program_id}"


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

    def attempt(session: Session) -> KillSwitchRecord:
        row = _lock_switch(session, cluster, program_id)
        if row is not None and row.engaged:
            return KillSwitchRecord.model_validate(row)
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
        return KillSwitchRecord.model_validate(row)

    return retry_conflict(engine, attempt, f"the kill switch of {program_id} on {cluster}")


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
        proposal = lock_proposal(session, engine, proposal_id)
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
            return KillSwitchRecord.model_validate(row)
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
        return KillSwitchRecord.model_validate(row)


def get_kill_switch(engine: Engine, cluster: str, program_id: str) -> KillSwitchRecord | None:
    """The recorded switch of exactly this scope, engaged or not (None: never used)."""
    with session_scope(engine) as session:
        row = session.get(KillSwitch, (cluster, program_id))
        return None if row is None else KillSwitchRecord.model_validate(row)


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
        return [KillSwitchRecord.model_validate(row) for row in rows]


# --------------------------------------------------------------------------- helpers


def _lock_switch(session: Session, cluster: str, program_id: str) -> KillSwitch | None:
    return session.scalar(
        select(KillSwitch)
        .where(KillSwitch.cluster == cluster, KillSwitch.program_id == program_id)
        .with_for_update()
    )

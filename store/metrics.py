"""Figures over the records database: how proposals end, how long sign-offs take, how
often each runbook succeeds, how fast migrations go (seeds 000 and 003's key metrics).

Plain SQLAlchemy reads, no writes, no Prefect import: the Prometheus collector
(``runbooks.metrics``) runs this at every scrape and the dashboard flow once a day.
Durations are computed in Python from the aware UTC datetimes ``UTCDateTime`` returns, so
SQLite and PostgreSQL give the same figures; the row-heavy table (migration accounts) is
counted in SQL.

Definitions (the README's metrics table says the same):

- Proposal counts: every proposal in the records by ``kind`` and ``status``. Housekeeping
  removes executed proposals after 90 days, so these are counts of what the records hold.
- Time to threshold: ``threshold_met_at - created_at`` of every proposal that met it;
  time to execution: ``executed_at - created_at`` of every executed proposal.
- Sign-off latency: ``approval.created_at - proposal.created_at`` of each accepted
  ``approve`` or ``reject`` (a member answering the request); refused attempts and
  timelock ``cancel`` vetoes are not answers to the request and are left out. Sign-off
  attempts by a key that is not one of the proposal's members count as ``(not a member)``.
- Runbook outcomes and success ratio, ``succeeded / (succeeded + failed)``:
  proposal kinds (upgrade, rollback, set-authority, make-immutable, kill-switch-release):
  closed proposals by status; ``executed`` succeeded, ``failed`` failed, ``cancelled`` and
  ``rejected`` are the members' decisions and count in neither.
  ``migration``: finished runs; ``completed`` succeeded, ``incomplete`` / ``failed`` failed.
  ``backup``: sets by whether they were verified (a set retention removed keeps the
  outcome it had). ``health``: daily reports by worst level; the flow fails on
  ``critical``, so ``critical`` failed and ``info`` / ``warning`` succeeded.
- Migration throughput: accounts in ``migrated`` or ``verified`` state divided by the
  run's elapsed time, ``finished_at`` (or the last progress, ``updated_at``, while it
  runs) minus ``created_at``. A resumed run's elapsed time includes the pause.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select

from store.db import session_scope
from store.models import (
    TERMINAL_STATUSES,
    Approval,
    Backup,
    Execution,
    HealthReport,
    KillSwitch,
    MigrationAccount,
    MigrationRun,
    Proposal,
    utcnow,
)

NOT_A_MEMBER = "(not a member)"
SIGNOFF_DECISIONS: tuple[str, ...] = ("approve", "reject")
MIGRATED_STATES: tuple[str, ...] = ("migrated", "verified")
# outcome -> True (succeeded), False (failed); outcomes not listed count in neither.
PROPOSAL_SUCCESS: dict[str, bool] = {"executed": True, "failed": False}
MIGRATION_SUCCESS: dict[str, bool] = {"completed": True, "incomplete": False, "failed": False}
BACKUP_SUCCESS: dict[str, bool] = {"verified": True, "failed": False}
HEALTH_SUCCESS: dict[str, bool] = {"info": True, "warning": True, "critical": False}


@dataclass(frozen=True, slots=True)
class Durations:
    """A set of durations in seconds: what a Prometheus summary holds, plus the worst."""

    count: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    @property
    def mean_seconds(self) -> float | None:
        return self.total_seconds / self.count if self.count else None

    def add(self, seconds: float) -> Durations:
        return Durations(
            self.count + 1, self.total_seconds + seconds, max(self.max_seconds, seconds)
        )


@dataclass(frozen=True, slots=True)
class RunbookOutcomes:
    """Finished runs of one runbook by outcome, and how many succeeded or failed."""

    runbook: str
    outcomes: dict[str, int]
    succeeded: int
    failed: int

    @property
    def success_ratio(self) -> float | None:
        """``succeeded / (succeeded + failed)``; None when nothing succeeded or failed."""
        decided = self.succeeded + self.failed
        return self.succeeded / decided if decided else None


@dataclass(frozen=True, slots=True)
class MigrationThroughput:
    """One migration run: accounts migrated, elapsed time, and accounts per second."""

    migration_id: int
    cluster: str
    program_id: str
    migrator: str
    status: str
    accounts: dict[str, int]
    accounts_migrated: int
    elapsed_seconds: float

    @property
    def accounts_per_second(self) -> float | None:
        if self.elapsed_seconds <= 0:
            return None
        return self.accounts_migrated / self.elapsed_seconds


@dataclass(frozen=True, slots=True)
class RecordsMetrics:
    """Everything ``collect_metrics`` read, at ``at``."""

    at: datetime
    # (kind, status) -> proposals
    proposals: dict[tuple[str, str], int] = field(default_factory=dict)
    # (kind, outcome) -> executions
    executions: dict[tuple[str, str], int] = field(default_factory=dict)
    time_to_threshold: dict[str, Durations] = field(default_factory=dict)
    time_to_execution: dict[str, Durations] = field(default_factory=dict)
    # member -> latency of their accepted approve/reject answers
    signoff_latency: dict[str, Durations] = field(default_factory=dict)
    # (member, decision, accepted) -> sign-off attempts
    signoffs: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    runbooks: dict[str, RunbookOutcomes] = field(default_factory=dict)
    migrations: list[MigrationThroughput] = field(default_factory=list)
    # (cluster, program_id) -> engaged
    kill_switches: dict[tuple[str, str], bool] = field(default_factory=dict)


def collect_metrics(engine: Engine, *, now: datetime | None = None) -> RecordsMetrics:
    """Read every figure in one read-only transaction.

    Raises ``RecordsError`` (with the URL redacted) when the database cannot answer.
    """
    at = now or utcnow()
    with session_scope(engine) as session:
        proposal_rows = session.execute(
            select(
                Proposal.id,
                Proposal.kind,
                Proposal.status,
                Proposal.created_at,
                Proposal.threshold_met_at,
                Proposal.executed_at,
                Proposal.members,
            )
        ).all()
        approval_rows = session.execute(
            select(
                Approval.proposal_id,
                Approval.member,
                Approval.decision,
                Approval.accepted,
                Approval.created_at,
            ).order_by(Approval.id)
        ).all()
        execution_rows = session.execute(
            select(Proposal.kind, Execution.outcome, func.count())
            .join(Proposal, Proposal.id == Execution.proposal_id)
            .group_by(Proposal.kind, Execution.outcome)
        ).all()
        runs = session.scalars(select(MigrationRun).order_by(MigrationRun.id)).all()
        account_rows = session.execute(
            select(MigrationAccount.migration_id, MigrationAccount.status, func.count()).group_by(
                MigrationAccount.migration_id, MigrationAccount.status
            )
        ).all()
        backup_rows = session.execute(
            select(Backup.status, Backup.verified_at.is_not(None), func.count()).group_by(
                Backup.status, Backup.verified_at.is_not(None)
            )
        ).all()
        health_rows = session.execute(
            select(HealthReport.level, func.count()).group_by(HealthReport.level)
        ).all()
        switches = session.execute(
            select(KillSwitch.cluster, KillSwitch.program_id, KillSwitch.engaged)
        ).all()
        run_facts = [
            (
                r.id,
                r.cluster,
                r.program_id,
                r.migrator,
                r.status,
                r.created_at,
                r.finished_at,
                r.updated_at,
            )
            for r in runs
        ]

    proposals: dict[tuple[str, str], int] = defaultdict(int)
    to_threshold: dict[str, Durations] = {}
    to_execution: dict[str, Durations] = {}
    created: dict[int, datetime] = {}
    members: dict[int, frozenset[str]] = {}
    closed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for pid, kind, status, created_at, threshold_met_at, executed_at, listed in proposal_rows:
        proposals[(kind, status)] += 1
        created[pid] = created_at
        members[pid] = frozenset(listed or ())
        if threshold_met_at is not None:
            to_threshold[kind] = to_threshold.get(kind, Durations()).add(
                _seconds(created_at, threshold_met_at)
            )
        if status == "executed" and executed_at is not None:
            to_execution[kind] = to_execution.get(kind, Durations()).add(
                _seconds(created_at, executed_at)
            )
        if status in TERMINAL_STATUSES:
            closed[kind][status] += 1

    latency: dict[str, Durations] = {}
    signoffs: dict[tuple[str, str, bool], int] = defaultdict(int)
    for pid, entered, decision, accepted, at_ in approval_rows:
        # The records keep a refused attempt's member as entered (possibly anything
        # pasted into the form); only the proposal's members are reported by name.
        member = entered if entered in members[pid] else NOT_A_MEMBER
        signoffs[(member, decision, bool(accepted))] += 1
        if accepted and decision in SIGNOFF_DECISIONS:
            latency[member] = latency.get(member, Durations()).add(_seconds(created[pid], at_))

    runbooks: dict[str, RunbookOutcomes] = {
        kind: _outcomes(kind, outcomes, PROPOSAL_SUCCESS) for kind, outcomes in closed.items()
    }

    accounts: dict[int, dict[str, int]] = defaultdict(dict)
    for migration_id, status, n in account_rows:
        accounts[migration_id][status] = n
    migrations: list[MigrationThroughput] = []
    finished_runs: dict[str, int] = defaultdict(int)
    for (
        mid,
        cluster,
        program_id,
        migrator,
        status,
        created_at,
        finished_at,
        updated_at,
    ) in run_facts:
        end = finished_at if finished_at is not None else updated_at
        counts = accounts.get(mid, {})
        migrations.append(
            MigrationThroughput(
                migration_id=mid,
                cluster=cluster,
                program_id=program_id,
                migrator=migrator,
                status=status,
                accounts=dict(counts),
                accounts_migrated=sum(counts.get(s, 0) for s in MIGRATED_STATES),
                elapsed_seconds=max(0.0, _seconds(created_at, end)),
            )
        )
        if status != "running":
            finished_runs[status] += 1
    if finished_runs:
        runbooks["migration"] = _outcomes("migration", finished_runs, MIGRATION_SUCCESS)

    backups: dict[str, int] = defaultdict(int)
    for status, was_verified, n in backup_rows:
        outcome = status if status != "removed" else ("verified" if was_verified else "failed")
        backups[outcome] += n
    if backups:
        runbooks["backup"] = _outcomes("backup", backups, BACKUP_SUCCESS)
    health = {level: n for level, n in health_rows}
    if health:
        runbooks["health"] = _outcomes("health", health, HEALTH_SUCCESS)

    return RecordsMetrics(
        at=at,
        proposals=dict(proposals),
        executions={(kind, outcome): n for kind, outcome, n in execution_rows},
        time_to_threshold=to_threshold,
        time_to_execution=to_execution,
        signoff_latency=latency,
        signoffs=dict(signoffs),
        runbooks=dict(sorted(runbooks.items())),
        migrations=migrations,
        kill_switches={(c, p): bool(e) for c, p, e in switches},
    )


def _outcomes(runbook: str, outcomes: dict[str, int], success: dict[str, bool]) -> RunbookOutcomes:
    return RunbookOutcomes(
        runbook=runbook,
        outcomes=dict(sorted(outcomes.items())),
        succeeded=sum(n for o, n in outcomes.items() if success.get(o) is True),
        failed=sum(n for o, n in outcomes.items() if success.get(o) is False),
    )


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


__all__ = [
    "Durations",
    "MigrationThroughput",
    "RecordsMetrics",
    "RunbookOutcomes",
    "collect_metrics",
]

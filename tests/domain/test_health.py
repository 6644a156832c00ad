"""The health check's judgements (domain.health), on observations made up here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import HealthCheckFailed
from domain import health
from domain.health import Finding, ProgramObservation
from programs.rpc import ProgramInfo

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
INFO = ProgramInfo(
    program_id="Prog", programdata="PD", authority="Auth", slot=10, sha256="a" * 64, capacity=1
)


def test_slot() -> None:
    assert health.check_slot("mainnet-beta", 5, 9, 2.0, localnet=False).level == "info"
    stalled = health.check_slot("mainnet-beta", 9, 9, 2.0, localnet=False)
    assert stalled.level == "critical" and "stalled" in stalled.message
    # A localnet makes slots only with transactions, and starts over when restarted.
    assert health.check_slot("localnet", 9, 9, 2.0, localnet=True).level == "info"
    assert health.check_slot("localnet", 3, 3, 0, localnet=True, previous_slot=50).level == "info"
    behind = health.check_slot("mainnet-beta", 40, 41, 2.0, localnet=False, previous_slot=50)
    assert behind.level == "critical" and "lagging" in behind.message


def test_version() -> None:
    assert health.check_version("c", "2.2.16", "2.2.0").level == "info"
    assert health.check_version("c", "1.18.26", "2.0.0").level == "warning"
    assert health.check_version("c", "2.10.0", "2.9.1").level == "info"  # numeric, not text


def test_program() -> None:
    ok = ProgramObservation("Prog", True, True, INFO)
    assert [f.level for f in health.check_program("p", "Auth", ok)] == ["info"]
    assert health.check_program("p", "Other", ok)[0].level == "critical"
    assert health.check_program("p", None, ok)[0].level == "critical"  # must be immutable
    missing = ProgramObservation("Prog", False, False)
    assert health.check_program("p", "Auth", missing)[0].level == "critical"
    not_executable = ProgramObservation("Prog", True, False, INFO)
    assert "executable" in {f.check for f in health.check_program("p", "Auth", not_executable)}


def test_hash() -> None:
    first = health.check_hash("p", INFO, None, None)
    assert first.record_baseline and first.findings[0].level == "info"
    same = health.check_hash("p", INFO, "a" * 64, None)
    assert not same.record_baseline and same.findings[0].level == "info"
    explained = health.check_hash("p", INFO, "b" * 64, executed_proposal=7)
    assert explained.record_baseline and "proposal #7" in explained.findings[0].message
    nobody = health.check_hash("p", INFO, "b" * 64, None)
    assert not nobody.record_baseline and nobody.findings[0].level == "critical"
    accepted = health.check_hash("p", INFO, "b" * 64, None, accepted=True)
    assert accepted.record_baseline and accepted.findings[0].level == "warning"


def test_balance() -> None:
    assert health.check_balance("fp", "A", 5 * 10**9, 1, 0.1).level == "info"
    assert health.check_balance("fp", "A", 5 * 10**8, 1, 0.1).level == "warning"
    assert health.check_balance("fp", "A", 10**7, 1, 0.1).level == "critical"


@dataclass
class P:
    id: int
    program_id: str
    kind: str
    timelock_ends_at: datetime | None


def test_timelocks() -> None:
    proposals = [
        P(1, "A", "upgrade", NOW + timedelta(hours=3)),  # ends soon: announce
        P(2, "B", "upgrade", NOW + timedelta(days=3)),  # later
        P(3, "C", "upgrade", NOW - timedelta(days=2)),  # forgotten
        P(4, "D", "upgrade", NOW - timedelta(hours=1)),  # just ended: the run executes it
    ]
    findings, statuses = health.check_timelocks(proposals, NOW, timedelta(hours=24))
    assert [s.proposal_id for s in statuses if s.expiring] == [1]
    assert [f.level for f in findings] == ["info", "info", "warning"]


def test_migrations() -> None:
    rows = [
        {"key": "1", "status": "running", "last_activity": NOW - timedelta(hours=7)},
        {"key": "2", "status": "running", "last_activity": NOW - timedelta(minutes=5)},
        {"key": "3", "status": "completed", "last_activity": NOW - timedelta(days=9)},
    ]
    stuck = health.check_migrations(rows, NOW, timedelta(hours=6), table="migration_runs")
    assert [(f.level, f.subject) for f in stuck] == [("warning", "migration_runs 1")]
    absent = health.check_migrations(
        None, NOW, timedelta(hours=6), table="migration_runs", absent_reason="not installed"
    )
    assert absent[0].level == "info" and "not installed" in absent[0].message


def test_levels_and_failure_message() -> None:
    findings = [
        Finding("a", "x", "info", "fine"),
        Finding("b", "y", "critical", "broken."),
        Finding("c", "z", "warning", "hmm"),
    ]
    assert health.worst(findings) == "critical" and health.worst([]) == "info"
    assert [r["level"] for r in health.table_rows(findings)] == ["critical", "warning", "info"]
    error = HealthCheckFailed(health.by_level(findings, "critical"))
    assert "[b] y: broken;" not in str(error) and "[b] y: broken." in str(error)

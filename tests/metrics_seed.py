"""Records with known times, written through the repositories the runbooks use, and the
figures a reader works out from them by hand (``EXPECTED_*``, arithmetic kept visible).

Five proposals (T0 = 2026-01-01 00:00 UTC, times in seconds after each creation):

- #1 upgrade at T0: A approves +60, B approves +180 (threshold +180), upgraded +240.
- #2 upgrade at T0+1000: A approves +30, C rejects +90, B's attempt refused +100, a
  non-member's refused +101: rejected.
- #3 rollback at T0+2000: B approves +20, C approves +40 (threshold +40), execution failed +100.
- #4 set-authority at T0+3000: no answer yet (proposed).
- #5 upgrade at T0+4000: A approves +10, C cancels (veto) +50: cancelled.

Three migration runs, four backup sets, four health reports and one engaged kill switch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from store.db import session_scope
from store.models import MigrationAccount, MigrationRun
from store.records import backups as backups_records
from store.records import health as health_records
from store.records import kill_switch
from store.records import proposals as proposals_records

T0 = datetime(2026, 1, 1, tzinfo=UTC)
A = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM"
B = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
C = "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH"
PROGRAM = "Vau1t11111111111111111111111111111111111111"

EXPECTED_PROPOSALS = {
    ("upgrade", "executed"): 1,
    ("upgrade", "rejected"): 1,
    ("upgrade", "cancelled"): 1,
    ("rollback", "failed"): 1,
    ("set-authority", "proposed"): 1,
}
EXPECTED_EXECUTIONS = {("upgrade", "upgraded"): 1, ("rollback", "failed"): 1}
# kind -> (count, sum of seconds)
EXPECTED_TO_THRESHOLD = {"upgrade": (1, 180.0), "rollback": (1, 40.0)}
EXPECTED_TO_EXECUTION = {"upgrade": (1, 240.0)}
# member -> (count, sum, max): accepted approve/reject only (B's refusal and C's cancel out)
EXPECTED_LATENCY = {
    A: (3, 60.0 + 30.0 + 10.0, 60.0),
    B: (2, 180.0 + 20.0, 180.0),
    C: (2, 90.0 + 40.0, 90.0),
}
EXPECTED_SIGNOFFS = {
    (A, "approve", True): 3,
    (B, "approve", True): 2,
    (B, "approve", False): 1,
    (C, "reject", True): 1,
    (C, "approve", True): 1,
    (C, "cancel", True): 1,
    # Whatever was pasted as "member" in a refused attempt is not reported as a name.
    ("(not a member)", "approve", False): 1,
}
# runbook -> (outcomes, succeeded, failed, success ratio)
EXPECTED_RUNBOOKS = {
    "upgrade": ({"cancelled": 1, "executed": 1, "rejected": 1}, 1, 0, 1 / 1),
    "rollback": ({"failed": 1}, 0, 1, 0 / 1),
    "migration": ({"completed": 1, "incomplete": 1}, 1, 1, 1 / 2),
    # b-3 was verified before retention removed it; b-4 had failed.
    "backup": ({"failed": 2, "verified": 2}, 2, 2, 2 / 4),
    "health": ({"critical": 1, "info": 2, "warning": 1}, 3, 1, 3 / 4),
}
# migration key -> (status, accounts by state, migrated, elapsed seconds, accounts/s)
EXPECTED_MIGRATIONS = {
    "m-1": ("completed", {"verified": 10}, 10, 50.0, 10 / 50),
    # still running: elapsed to its last progress (updated_at)
    "m-2": ("running", {"migrated": 3, "pending": 2, "failed": 1}, 3, 20.0, 3 / 20),
    "m-3": ("incomplete", {"verified": 4, "failed": 1}, 4, 100.0, 4 / 100),
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _proposal(engine: Engine, n: int, kind: str, created: float) -> int:
    return proposals_records.record_proposal(
        engine, key=f"metrics-{n}", kind=kind, cluster="localnet", backend="keypair",
        governance="policy", program_id=PROGRAM, description=f"proposal {n}", proposer="ops",
        members=[A, B, C], threshold=2, timelock_seconds=0, created_at=at(created),
    ).id  # fmt: skip


def _signoff(
    engine: Engine, pid: int, member: str, decision: str, when: float, **kw: object
) -> None:
    proposals_records.record_approval(
        engine, pid, member=member, decision=decision, accepted=kw.pop("accepted", True),
        at=at(when), **kw,
    )  # fmt: skip


def seed(engine: Engine) -> None:
    p1 = _proposal(engine, 1, "upgrade", 0)
    _signoff(engine, p1, A, "approve", 60)
    _signoff(engine, p1, B, "approve", 180)
    proposals_records.mark_threshold_met(engine, p1, at(180))
    proposals_records.record_execution(
        engine, p1, outcome="upgraded", new_hash="b" * 64, at=at(240)
    )

    p2 = _proposal(engine, 2, "upgrade", 1000)
    _signoff(engine, p2, A, "approve", 1030)
    _signoff(engine, p2, C, "reject", 1090)
    _signoff(engine, p2, B, "approve", 1100, accepted=False, reason="signature does not verify")
    _signoff(engine, p2, "not-a-key paste", "approve", 1101, accepted=False, reason="not a member")
    proposals_records.set_proposal_status(engine, p2, "rejected", reason="C rejected")

    p3 = _proposal(engine, 3, "rollback", 2000)
    _signoff(engine, p3, B, "approve", 2020)
    _signoff(engine, p3, C, "approve", 2040)
    proposals_records.mark_threshold_met(engine, p3, at(2040))
    proposals_records.record_execution(
        engine, p3, outcome="failed", detail="simulation failed", at=at(2100)
    )

    _proposal(engine, 4, "set-authority", 3000)

    p5 = _proposal(engine, 5, "upgrade", 4000)
    _signoff(engine, p5, A, "approve", 4010)
    _signoff(engine, p5, C, "cancel", 4050)
    proposals_records.set_proposal_status(engine, p5, "cancelled", reason="vetoed in the timelock")

    # Migration runs with explicit times (the repository stamps "now").
    runs = {
        "m-1": ("completed", 0, 50, 50, {"verified": 10}),
        "m-2": ("running", 100, None, 120, {"migrated": 3, "pending": 2, "failed": 1}),
        "m-3": ("incomplete", 200, 300, 300, {"verified": 4, "failed": 1}),
    }
    with session_scope(engine) as session:
        for key, (status, created, finished, updated, accounts) in runs.items():
            run = MigrationRun(
                key=key, cluster="localnet", program_id=PROGRAM, migrator="demo_vault",
                from_version=1, to_version=2, program_hash="a" * 64, status=status,
                created_at=at(created), updated_at=at(updated),
                finished_at=None if finished is None else at(finished),
            )  # fmt: skip
            session.add(run)
            session.flush()
            i = 0
            for state, n in accounts.items():
                for _ in range(n):
                    i += 1
                    session.add(
                        MigrationAccount(
                            migration_id=run.id, address=f"{key}-{i}", status=state,
                            from_version=1, snapshot=b"\x01", snapshot_sha256="c" * 64,
                            error="boom" if state == "failed" else None,
                        )
                    )  # fmt: skip

    for name, status in (
        ("b-1", "verified"),
        ("b-2", "failed"),
        ("b-3", "verified"),
        ("b-4", "failed"),
    ):
        backups_records.record_backup(
            engine, name=name, directory=f"/backups/{name}", backend="sqlite",
            records_file="records.db", records_sha256="d" * 64, table_counts={}, programs={},
            status=status, created_at=at(0),
            verified_at=at(10) if status == "verified" else None,
        )  # fmt: skip
    backups_records.mark_backup_removed(engine, "b-3", reason="retention")
    backups_records.mark_backup_removed(engine, "b-4", reason="retention")

    for i, level in enumerate(("info", "info", "warning", "critical")):
        health_records.record_health_report(
            engine, cluster="localnet", level=level, findings=[], at=at(i), flow_run_id=f"h-{i}"
        )

    kill_switch.engage_kill_switch(engine, "localnet", PROGRAM, reason="drill", actor="ops")

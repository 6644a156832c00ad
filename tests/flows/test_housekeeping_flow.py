"""The housekeeping runbook removes exactly the old rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from flows.housekeeping import housekeeping
from store.models import Approval, Execution, MigrationAccount, MigrationRun, Proposal
from store.records import audit as audit_records
from store.records import housekeeping as housekeeping_records
from store.records import proposals as proposals_records

NOW = datetime.now(UTC)
MEMBERS = [
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
]


def proposal(engine: Engine, key: str, created_days: int, executed_days: int | None) -> int:
    p = proposals_records.record_proposal(
        engine, key=key, kind="upgrade", cluster="localnet", backend="keypair", governance="g",
        program_id="prog", description=key, proposer="alice", members=MEMBERS, threshold=2,
        timelock_seconds=0, created_at=NOW - timedelta(days=created_days),
    )  # fmt: skip
    for member in MEMBERS[:2]:
        proposals_records.record_approval(
            engine, p.id, member=member, decision="approve", accepted=True,
            at=NOW - timedelta(days=created_days),
        )  # fmt: skip
    if executed_days is None:
        proposals_records.set_proposal_status(engine, p.id, "cancelled", reason="not needed")
    else:
        proposals_records.record_execution(
            engine, p.id, outcome="upgraded", new_hash="b" * 64,
            at=NOW - timedelta(days=executed_days),
        )  # fmt: skip
    return p.id


def migration(session: Session, key: str, finished_days: int | None, accounts: int) -> int:
    run = MigrationRun(
        key=key, cluster="localnet", program_id="prog", migrator="demo", from_version=1,
        to_version=2, program_hash="a" * 64, status="running" if finished_days is None else
        "completed", created_at=NOW - timedelta(days=60), updated_at=NOW - timedelta(days=1),
        finished_at=None if finished_days is None else NOW - timedelta(days=finished_days),
    )  # fmt: skip
    session.add(run)
    session.flush()
    for i in range(accounts):
        session.add(
            MigrationAccount(
                migration_id=run.id, address=f"{key}-acct-{i}", status="verified",
                from_version=1, snapshot=bytes([i, 0, 255]), snapshot_sha256="c" * 64,
            )
        )  # fmt: skip
    return run.id


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


async def test_housekeeping_removes_exactly_the_old_rows(
    prefect_api: None, records_db: Engine
) -> None:
    old = proposal(records_db, "old", created_days=101, executed_days=100)
    old_too = proposal(records_db, "old-too", created_days=96, executed_days=95)
    recent = proposal(records_db, "executed-recently", created_days=100, executed_days=10)
    cancelled = proposal(records_db, "cancelled", created_days=200, executed_days=None)
    referenced = proposal(records_db, "referenced", created_days=130, executed_days=120)
    # Another runbook's row referencing a proposal: that proposal must stay.
    with records_db.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE other_refs (id INTEGER PRIMARY KEY, "
                "proposal_id INTEGER NOT NULL REFERENCES proposals(id))"
            )
        )
        conn.execute(
            text("INSERT INTO other_refs (id, proposal_id) VALUES (1, :p)"), {"p": referenced}
        )
    with Session(records_db) as session, session.begin():
        done_long_ago = migration(session, "m-old", finished_days=40, accounts=3)
        done_lately = migration(session, "m-recent", finished_days=5, accounts=2)
        in_flight = migration(session, "m-running", finished_days=None, accounts=1)

    # A dry run reports and changes nothing.
    report = await housekeeping(dry_run=True)
    assert report["removed_proposals"] == [old, old_too]
    assert count(records_db, Proposal) == 5 and count(records_db, MigrationRun) == 3

    report = await housekeeping()
    assert report["removed_proposals"] == [old, old_too]
    assert (report["removed_approvals"], report["removed_executions"]) == (4, 2)
    assert report["kept"] == {str(referenced): "referenced by other_refs.proposal_id"}
    with Session(records_db) as session:
        assert set(session.scalars(select(Proposal.id))) == {recent, cancelled, referenced}
        assert set(session.scalars(select(Approval.proposal_id))) == {recent, cancelled, referenced}
        assert set(session.scalars(select(Execution.proposal_id))) == {recent, referenced}
        assert set(session.scalars(select(MigrationRun.id))) == {done_lately, in_flight}
    assert count(records_db, MigrationAccount) == 3
    assert report["archived"] == {"migration_accounts": 3, "migration_runs": 1}
    archived_runs = housekeeping_records.archived_rows(records_db, "migration_runs")
    assert [r["key"] for r in archived_runs] == ["m-old"] and archived_runs[0][
        "id"
    ] == done_long_ago
    accounts = housekeeping_records.archived_rows(records_db, "migration_accounts")
    assert sorted(a["address"] for a in accounts) == [f"m-old-acct-{i}" for i in range(3)]
    assert accounts[0]["snapshot"]["base64"]  # bytes kept, as base64

    # Nothing is left to do a second time; the audit log says what each run did.
    again = await housekeeping()
    assert again["removed_proposals"] == [] and again["archived"] == {}
    actions = [
        e.action
        for e in audit_records.audit_events(records_db, housekeeping_records.HOUSEKEEPING_SUBJECT)
    ]
    assert actions == [
        "housekeeping.proposals_removed", "housekeeping.archived",
        "housekeeping.proposals_removed",
    ]  # fmt: skip
    assert proposals_records.get_proposal(records_db, old) is None
    assert audit_records.audit_events(
        records_db, proposals_records.proposal_subject(old)
    )  # history kept


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_absent_migration_tables_are_skipped_and_said(records_db: Engine) -> None:
    result = housekeeping_records.archive_old_rows(
        records_db, table="migration_progress", timestamp_column="completed_at", older_than=NOW
    )
    assert result.archived == {} and "not in this database" in (result.skipped or "")
    result = housekeeping_records.archive_old_rows(
        records_db, table="migration_runs", timestamp_column="completed_at", older_than=NOW
    )
    assert "no column completed_at" in (result.skipped or "")

"""Operations records (store.operations_records) on SQLite and PostgreSQL: the key
registry's rules, and retries that write nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from core.errors import InputError
from store import operations_records as ops
from store import records
from store.db import create_engine, migrate

T0 = datetime(2025, 1, 1, tzinfo=UTC)
OLD, NEW, GOV = (
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


def test_rotation_updates_the_registry_once(engine: Engine) -> None:
    ops.register_key(engine, cluster="c", pubkey=OLD, role="upgrade", label="k1",
                     programs=["P1", "P2"], rotated_at=T0)  # fmt: skip
    first = ops.record_rotation(
        engine, cluster="c", program_id="P1", old_authority=OLD, new_authority=NEW,
        proposal_id=11, signature="sig", at=T0 + timedelta(days=1),
    )  # fmt: skip
    again = ops.record_rotation(
        engine, cluster="c", program_id="P1", old_authority=OLD, new_authority=NEW,
        proposal_id=11, signature="sig",
    )  # fmt: skip
    assert again == first and len(ops.rotations(engine)) == 1
    keys = {k.pubkey: k for k in ops.managed_keys(engine, "c", include_retired=True)}
    # The old key still controls P2: not retired yet.
    assert keys[OLD].programs == ("P2",) and keys[OLD].active
    assert keys[NEW].programs == ("P1",) and keys[NEW].rotated_at == T0 + timedelta(days=1)
    ops.record_rotation(engine, cluster="c", program_id="P2", old_authority=OLD,
                        new_authority=NEW, proposal_id=12)  # fmt: skip
    keys = {k.pubkey: k for k in ops.managed_keys(engine, "c", include_retired=True)}
    assert not keys[OLD].active and keys[NEW].programs == ("P1", "P2")
    assert [k.pubkey for k in ops.managed_keys(engine, "c")] == [NEW]
    assert len(records.audit_events(engine, action="key.rotated")) == 2


def test_registry_rules(engine: Engine) -> None:
    ops.register_key(engine, cluster="c", pubkey=GOV, role="governance", label="gov")
    assert ops.register_key(engine, cluster="c", pubkey=GOV, role="governance", label="gov")
    with pytest.raises(InputError, match="separate keys per role"):
        ops.register_key(engine, cluster="c", pubkey=GOV, role="emergency", label="e")
    ops.retire_key(engine, cluster="c", pubkey=GOV, reason="rotated")
    with pytest.raises(InputError, match="cannot serve again"):
        ops.register_key(engine, cluster="c", pubkey=GOV, role="governance", label="gov")
    assert len(records.audit_events(engine, action="key.registered")) == 1


def test_health_reports_and_backups_are_written_once(engine: Engine) -> None:
    findings = [{"check": "hash", "subject": "p", "level": "critical", "message": "x"}]
    report = ops.record_health_report(engine, cluster="c", level="critical", findings=findings,
                                      slot=5, flow_run_id="run-1")  # fmt: skip
    assert (
        ops.record_health_report(
            engine, cluster="c", level="critical", findings=findings, flow_run_id="run-1"
        )
        == report
    )
    acked = ops.acknowledge_health_report(engine, report.id, by="slack:U1")
    assert ops.acknowledge_health_report(engine, report.id, by="slack:U2") == acked
    assert acked.acknowledged_by == "slack:U1"
    assert len(records.audit_events(engine, ops.health_subject("c"))) == 2

    fields = {
        "name": "set-1", "directory": "/b/set-1", "backend": "sqlite",
        "records_file": "records.sqlite.gz", "records_sha256": "c" * 64,
        "table_counts": {"proposals": 3}, "programs": {}, "status": "verified",
    }  # fmt: skip
    assert ops.record_backup(engine, **fields) == ops.record_backup(engine, **fields)
    removed = ops.mark_backup_removed(engine, "set-1", reason="retention")
    assert removed is not None and removed.status == "removed"
    assert ops.mark_backup_removed(engine, "set-1", reason="again") == removed
    assert ops.mark_backup_removed(engine, "never-recorded", reason="x") is None
    actions = [e.action for e in records.audit_events(engine, ops.backup_subject("set-1"))]
    assert actions == ["backup.verified", "backup.removed"]

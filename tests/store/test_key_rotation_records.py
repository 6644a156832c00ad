"""Operations records (store.records.key_rotation) on SQLite and PostgreSQL: the key
registry's rules, and retries that write nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from core.errors import InputError
from store.records import audit, backups, health, key_rotation

T0 = datetime(2025, 1, 1, tzinfo=UTC)
OLD, NEW, GOV = (
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
)


def test_rotation_updates_the_registry_once(engine: Engine) -> None:
    key_rotation.register_key(engine, cluster="c", pubkey=OLD, role="upgrade", label="k1",
                     programs=["P1", "P2"], rotated_at=T0)  # fmt: skip
    first = key_rotation.record_rotation(
        engine, cluster="c", program_id="P1", old_authority=OLD, new_authority=NEW,
        proposal_id=11, signature="sig", at=T0 + timedelta(days=1),
    )  # fmt: skip
    again = key_rotation.record_rotation(
        engine, cluster="c", program_id="P1", old_authority=OLD, new_authority=NEW,
        proposal_id=11, signature="sig",
    )  # fmt: skip
    assert again == first and len(key_rotation.rotations(engine)) == 1
    keys = {k.pubkey: k for k in key_rotation.managed_keys(engine, "c", include_retired=True)}
    # The old key still controls P2: not retired yet.
    assert keys[OLD].programs == ("P2",) and keys[OLD].active
    assert keys[NEW].programs == ("P1",) and keys[NEW].rotated_at == T0 + timedelta(days=1)
    key_rotation.record_rotation(engine, cluster="c", program_id="P2", old_authority=OLD,
                        new_authority=NEW, proposal_id=12)  # fmt: skip
    keys = {k.pubkey: k for k in key_rotation.managed_keys(engine, "c", include_retired=True)}
    assert not keys[OLD].active and keys[NEW].programs == ("P1", "P2")
    assert [k.pubkey for k in key_rotation.managed_keys(engine, "c")] == [NEW]
    assert len(audit.audit_events(engine, action="key.rotated")) == 2


def test_registry_rules(engine: Engine) -> None:
    key_rotation.register_key(engine, cluster="c", pubkey=GOV, role="governance", label="gov")
    assert key_rotation.register_key(
        engine, cluster="c", pubkey=GOV, role="governance", label="gov"
    )
    with pytest.raises(InputError, match="separate keys per role"):
        key_rotation.register_key(engine, cluster="c", pubkey=GOV, role="emergency", label="e")
    key_rotation.retire_key(engine, cluster="c", pubkey=GOV, reason="rotated")
    with pytest.raises(InputError, match="cannot serve again"):
        key_rotation.register_key(engine, cluster="c", pubkey=GOV, role="governance", label="gov")
    assert len(audit.audit_events(engine, action="key.registered")) == 1


def test_health_reports_and_backups_are_written_once(engine: Engine) -> None:
    findings = [{"check": "hash", "subject": "p", "level": "critical", "message": "x"}]
    report = health.record_health_report(engine, cluster="c", level="critical", findings=findings,
                                      slot=5, flow_run_id="run-1")  # fmt: skip
    assert (
        health.record_health_report(
            engine, cluster="c", level="critical", findings=findings, flow_run_id="run-1"
        )
        == report
    )
    acked = health.acknowledge_health_report(engine, report.id, by="slack:U1")
    assert health.acknowledge_health_report(engine, report.id, by="slack:U2") == acked
    assert acked.acknowledged_by == "slack:U1"
    assert len(audit.audit_events(engine, health.health_subject("c"))) == 2

    fields = {
        "name": "set-1", "directory": "/b/set-1", "backend": "sqlite",
        "records_file": "records.sqlite.gz", "records_sha256": "c" * 64,
        "table_counts": {"proposals": 3}, "programs": {}, "status": "verified",
    }  # fmt: skip
    assert backups.record_backup(engine, **fields) == backups.record_backup(engine, **fields)
    removed = backups.mark_backup_removed(engine, "set-1", reason="retention")
    assert removed is not None and removed.status == "removed"
    assert backups.mark_backup_removed(engine, "set-1", reason="again") == removed
    assert backups.mark_backup_removed(engine, "never-recorded", reason="x") is None
    actions = [e.action for e in audit.audit_events(engine, backups.backup_subject("set-1"))]
    assert actions == ["backup.verified", "backup.removed"]

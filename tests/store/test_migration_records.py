"""The migration / archive / kill-switch repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine

from core.errors import ApprovalError, InputError, RecordsError
from store import records
from store.models import ALL_PROGRAMS
from store.records import archives, audit, migrations, proposals
from store.records import kill_switch as kill_switch_records
from store.records.migrations import AccountOutcome, Snapshot

HASH_A = "aa" * 32
HASH_B = "bb" * 32


def start(engine: Engine, key: str = "m-1", **overrides: object) -> migrations.MigrationRunRecord:
    fields: dict[str, object] = {
        "key": key,
        "cluster": "localnet",
        "program_id": "Prog1111",
        "migrator": "demo_vault",
        "from_version": 1,
        "to_version": 2,
        "program_hash": HASH_B,
        "flow_run_id": "run-1",
    }
    fields.update(overrides)
    return migrations.start_migration(engine, **fields)  # type: ignore[arg-type]


def audit_actions(engine: Engine, subject: str) -> list[str]:
    return [e.action for e in audit.audit_events(engine, subject)]


def test_start_is_idempotent_and_a_rerun_resumes(engine: Engine) -> None:
    run = start(engine)
    assert (run.status, run.program_hash) == ("running", HASH_B)
    assert start(engine) == run  # same flow run: nothing written
    migrations.finish_migration(engine, run.id, "incomplete")
    resumed = start(engine, flow_run_id="run-2", program_hash=HASH_A)
    assert (resumed.id, resumed.status, resumed.flow_run_id) == (run.id, "running", "run-2")
    # The binary that wrote the new layout is the one the migration started with.
    assert resumed.program_hash == HASH_B
    assert audit_actions(engine, migrations.migration_subject(run.id)) == [
        "migration.started",
        "migration.finished",
        "migration.resumed",
    ]
    with pytest.raises(RecordsError, match="different migrator"):
        start(engine, migrator="other")
    with pytest.raises(InputError, match="from one layout to another"):
        start(engine, key="m-2", to_version=1)


def test_snapshots_are_kept_once_and_outcomes_need_them(engine: Engine) -> None:
    run = start(engine)
    snaps = [Snapshot(f"acct{i}", 1, bytes([i]) * 88) for i in range(3)]
    assert migrations.record_snapshots(engine, run.id, snaps) == 3
    # A retry (or a later batch seeing the account again) keeps the first snapshot.
    assert migrations.record_snapshots(engine, run.id, [Snapshot("acct0", 1, b"\xff" * 88)]) == 0
    assert migrations.snapshots(engine, run.id, ["acct0"]) == {"acct0": bytes([0]) * 88}
    states = migrations.account_states(engine, run.id)
    assert {s.status for s in states.values()} == {"pending"}
    with pytest.raises(RecordsError, match="no snapshot of ghost"):
        migrations.record_outcomes(engine, run.id, [AccountOutcome("ghost", "migrated")])
    with pytest.raises(InputError, match="needs an error"):
        migrations.record_outcomes(engine, run.id, [AccountOutcome("acct0", "failed")])
    assert audit_actions(engine, migrations.migration_subject(run.id)) == [
        "migration.started",
        "migration.snapshots",
    ]


def test_outcomes_follow_the_status_rules_and_are_idempotent(engine: Engine) -> None:
    run = start(engine)
    migrations.record_snapshots(
        engine, run.id, [Snapshot(a, 1, b"x" * 88) for a in ("a", "b", "c")]
    )
    changed = migrations.record_outcomes(
        engine,
        run.id,
        [
            AccountOutcome("a", "verified", signature="sig-a", sent=True),
            AccountOutcome("b", "failed", "program error AccountDidNotDeserialize", sent=True),
            AccountOutcome("c", "migrated"),  # found migrated on chain: nothing sent
        ],
    )
    assert changed == {"verified": 1, "failed": 1, "migrated": 1}
    states = migrations.account_states(engine, run.id)
    assert (states["a"].status, states["a"].attempts, states["a"].signature) == (
        "verified",
        1,
        "sig-a",
    )
    assert (states["b"].status, states["b"].attempts) == ("failed", 1)
    assert "AccountDidNotDeserialize" in (states["b"].error or "")
    assert (states["c"].status, states["c"].attempts) == ("migrated", 0)
    events = len(audit.audit_events(engine))
    # The same outcomes again (a retried task) write nothing; a verified account is not
    # "unverified" by a later pass that merely sees it migrated.
    assert migrations.record_outcomes(engine, run.id, [AccountOutcome("c", "migrated")]) == {}
    assert migrations.record_outcomes(engine, run.id, [AccountOutcome("a", "migrated")]) == {}
    assert len(audit.audit_events(engine)) == events
    # Retried and migrated: the error clears, the attempts add up.
    migrations.record_outcomes(
        engine, run.id, [AccountOutcome("b", "verified", signature="s", sent=True)]
    )
    b = migrations.account_states(engine, run.id)["b"]
    assert (b.status, b.error, b.attempts) == ("verified", None, 2)
    assert migrations.migration_counts(engine, run.id) == {
        "pending": 0,
        "migrated": 1,
        "verified": 2,
        "failed": 0,
    }
    assert migrations.failed_accounts(engine, run.id) == []


def test_migrated_accounts_by_the_binary_that_wrote_them(engine: Engine) -> None:
    run = start(engine)
    migrations.record_snapshots(
        engine, run.id, [Snapshot(a, 1, b"x" * 88) for a in ("a", "b", "c")]
    )
    migrations.record_outcomes(
        engine,
        run.id,
        [
            AccountOutcome("a", "verified"),
            AccountOutcome("b", "migrated"),
            AccountOutcome("c", "failed", "refused"),
        ],
    )
    at_risk = migrations.migrated_accounts(
        engine, "localnet", "Prog1111", written_by_other_than=HASH_A
    )
    assert [(a.address, a.to_version, a.program_hash) for a in at_risk] == [
        ("a", 2, HASH_B),
        ("b", 2, HASH_B),
    ]
    # The binary that migrated them reads them.
    assert (
        migrations.migrated_accounts(engine, "localnet", "Prog1111", written_by_other_than=HASH_B)
        == []
    )


def test_archives_check_their_hash_and_keep_one_copy(engine: Engine) -> None:
    elf = b"\x7fELF" + bytes(range(1, 200)) + bytes(16)
    digest = hashlib.sha256(elf.rstrip(b"\x00")).hexdigest()
    with pytest.raises(InputError, match="refusing"):
        archives.archive_program(
            engine, cluster="c", program_id="P", sha256=HASH_A, data=elf, slot=3, authority="A"
        )
    first = archives.archive_program(
        engine, cluster="c", program_id="P", sha256=digest, data=elf, slot=3, authority="A"
    )
    assert (first.data, first.size, first.slot) == (elf, len(elf), 3)
    again = archives.archive_program(
        engine, cluster="c", program_id="P", sha256=digest, data=elf, slot=3, authority="A"
    )
    assert again == first
    other = b"\x7fELF" + b"\x01" * 64
    other_hash = hashlib.sha256(other).hexdigest()
    archives.archive_program(
        engine,
        cluster="c",
        program_id="P",
        sha256=other_hash,
        data=other,
        slot=9,
        authority="A",
        proposal_id=None,
    )
    assert archives.latest_archive(engine, "c", "P").sha256 == other_hash  # type: ignore[union-attr]
    assert archives.latest_archive(engine, "c", "P", excluding=other_hash).sha256 == digest  # type: ignore[union-attr]
    assert archives.get_archive(engine, "c", "P", digest.upper()) == first
    assert archives.get_archive(engine, "c", "Q", digest) is None
    assert audit_actions(engine, records.program_subject("c", "P")) == [
        "program.archived",
        "program.archived",
    ]


def release_proposal(
    engine: Engine, program_id: str = "P", kind: str = kill_switch_records.RELEASE_KIND
) -> int:
    return proposals.record_proposal(
        engine,
        key=f"release-{program_id}-{kind}",
        kind=kind,
        cluster="c",
        backend="keypair",
        governance="ops",
        program_id=program_id,
        buffer="kill-switch-release",
        description="release",
        proposer="oncall",
        members=["m1", "m2", "m3"],
        threshold=2,
        timelock_seconds=0,
    ).id


def test_kill_switch_engages_at_once_and_releases_only_after_a_sign_off(engine: Engine) -> None:
    assert kill_switch_records.engaged_kill_switches(engine, "c", "P") == []
    on = kill_switch_records.engage_kill_switch(engine, "c", "P", reason="drain", actor="oncall")
    assert on.engaged and on.scope == "program P on c"
    # Engaging again keeps the first reason and writes nothing.
    assert kill_switch_records.engage_kill_switch(engine, "c", "P", reason="other", actor="x") == on
    assert [s.program_id for s in kill_switch_records.engaged_kill_switches(engine, "c", "P")] == [
        "P"
    ]

    proposal_id = release_proposal(engine)
    with pytest.raises(ApprovalError, match="has not met its sign-off threshold"):
        kill_switch_records.release_kill_switch(engine, "c", "P", proposal_id=proposal_id)
    wrong = release_proposal(engine, kind="upgrade")
    with pytest.raises(InputError, match="not a kill-switch-release"):
        kill_switch_records.release_kill_switch(engine, "c", "P", proposal_id=wrong)
    proposals.mark_threshold_met(engine, proposal_id)
    off = kill_switch_records.release_kill_switch(
        engine, "c", "P", proposal_id=proposal_id, actor="oncall"
    )
    assert (off.engaged, off.release_proposal_id) == (False, proposal_id)
    assert proposals.get_proposal(engine, proposal_id).status == "executed"  # type: ignore[union-attr]
    # Idempotent for its proposal; the switch is off for every runbook.
    assert kill_switch_records.release_kill_switch(engine, "c", "P", proposal_id=proposal_id) == off
    assert kill_switch_records.engaged_kill_switches(engine, "c", "P") == []
    assert audit_actions(engine, kill_switch_records.kill_switch_subject("c", "P")) == [
        "kill_switch.engaged",
        "kill_switch.released",
    ]


def test_a_cluster_wide_switch_stops_every_program(engine: Engine) -> None:
    kill_switch_records.engage_kill_switch(
        engine, "c", ALL_PROGRAMS, reason="incident", actor="oncall"
    )
    switches = kill_switch_records.engaged_kill_switches(engine, "c", "AnyProgram")
    assert [s.scope for s in switches] == ["every program on c"]
    assert kill_switch_records.engaged_kill_switches(engine, "other-cluster", "AnyProgram") == []


def test_recorded_progress_moves_the_runs_last_activity(engine: Engine) -> None:
    run = start(engine)
    migrations.record_snapshots(engine, run.id, [Snapshot("a", 1, b"x" * 88)])
    migrations.record_outcomes(engine, run.id, [AccountOutcome("a", "verified", sent=True)])
    after = migrations.get_migration(engine, run.id)
    assert after is not None and after.updated_at > run.updated_at

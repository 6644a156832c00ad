"""Backups of the records database (SQLite backup API, real pg_dump/pg_restore), their
manifest, hash checks and retention, without Prefect."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, select

from core.errors import BackupError, HashMismatch, InputError
from domain.backup import SetAge, plan_retention
from store import backup
from store.backup import Manifest
from store.db import create_engine, migrate
from store.models import Proposal
from store.records import key_rotation
from store.records import proposals as proposals_records
from store.testing import create_scratch_database, drop_database

MEMBERS = [
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
]


def populate(engine: Engine, n: int = 5) -> None:
    """Proposals with approvals and executions, audit rows, and operations rows."""
    for i in range(n):
        p = proposals_records.record_proposal(
            engine, key=f"k-{i}", kind="upgrade", cluster="localnet", backend="keypair",
            governance="gov", program_id="prog", buffer=f"buf-{i}", buffer_hash="a" * 64,
            description=f"upgrade {i}", proposer="alice", members=MEMBERS, threshold=2,
            timelock_seconds=0,
        )  # fmt: skip
        proposals_records.record_approval(
            engine, p.id, member=MEMBERS[0], decision="approve", accepted=True
        )
        if i % 2 == 0:
            proposals_records.record_execution(engine, p.id, outcome="upgraded", new_hash="b" * 64)
    key_rotation.register_key(
        engine, cluster="localnet", pubkey=MEMBERS[1], role="governance", label="gov"
    )


@pytest.fixture
def source(db_url: str) -> Iterator[tuple[str, Engine]]:
    engine = create_engine(db_url)
    migrate(engine)
    populate(engine)
    yield db_url, engine
    engine.dispose()


@pytest.fixture
def target_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of the same kind to restore into."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'records.db'}"
        return
    url = create_scratch_database()
    yield url
    drop_database(url)


def test_a_backup_restores_to_identical_rows(
    source: tuple[str, Engine], target_url: str, tmp_path: Path
) -> None:
    url, engine = source
    directory = tmp_path / "set"
    dump = backup.dump_database(url, directory)
    assert dump.tables["proposals"] == 5 and dump.tables["approvals"] == 5
    assert dump.tables["executions"] == 3 and dump.tables["managed_keys"] == 1
    assert dump.tables == backup.table_counts(url)
    assert dump.sha256 == backup.sha256_file(directory / dump.file)
    if dump.backend == "postgresql":
        assert (directory / dump.file).read_bytes()[:5] == b"PGDMP"  # pg_dump custom format
    else:
        assert (directory / dump.file).read_bytes()[:2] == b"\x1f\x8b"  # gzip

    # Verified in a scratch database first, then restored for real into the target.
    assert backup.verify_dump(directory, dump, url) == dump.tables
    assert backup.restore_database(directory, dump, target_url) == dump.tables
    restored_url = make_url(target_url)
    if dump.schema not in (None, "public"):  # the test's records live in a scratch schema
        restored_url = restored_url.update_query_dict({"options": f"-csearch_path={dump.schema}"})
    restored = create_engine(restored_url)
    try:
        with engine.connect() as a, restored.connect() as b:
            query = select(Proposal.key, Proposal.status).order_by(Proposal.id)
            assert a.execute(query).all() == b.execute(query).all()
        # Restoring never overwrites: the target now holds tables and is refused.
        with pytest.raises(BackupError, match="restore into a new"):
            backup.restore_database(directory, dump, target_url)
    finally:
        restored.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_corrupted_backup_is_refused_by_its_hash(
    source: tuple[str, Engine], tmp_path: Path
) -> None:
    url, _ = source
    directory = tmp_path / "set"
    manifest = Manifest(name="set", created_at=datetime.now(UTC).isoformat(), cluster="localnet")
    manifest.records = backup.dump_database(url, directory)
    manifest.status = "verified"
    backup.write_manifest(directory, manifest)
    backup.check_hashes(directory, backup.read_manifest(directory))  # intact: accepted

    path = directory / manifest.records.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatch, match="corrupted or altered"):
        backup.check_hashes(directory, backup.read_manifest(directory))
    with pytest.raises(HashMismatch):
        backup.verify_dump(directory, manifest.records, url)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_restore_that_lost_rows_does_not_count(
    source: tuple[str, Engine], tmp_path: Path
) -> None:
    url, _ = source
    dump = backup.dump_database(url, tmp_path / "set")
    claimed = backup.DatabaseDump(**{**dump.__dict__, "tables": {**dump.tables, "proposals": 6}})
    with pytest.raises(BackupError, match="proposals 6 -> 5"):
        backup.verify_dump(tmp_path / "set", claimed, url)


def test_program_binaries_keep_their_verifiable_hash(tmp_path: Path) -> None:
    from programs import loader

    elf = b"\x7fELF" + bytes(range(256)) * 4
    programdata = (
        bytes([3, 0, 0, 0]) + (7).to_bytes(8, "little") + b"\x00" * 33 + elf + b"\x00" * 64
    )
    entry = backup.write_program(
        tmp_path,
        program_id="prog",
        name="demo",
        code=loader.program_bytes(programdata),
        slot=7,
        authority=None,
    )
    assert entry.verifiable_sha256 == loader.verifiable_hash(elf)
    assert backup.read_program(tmp_path, entry) == elf
    (tmp_path / entry.file).write_bytes(b"tampered")
    with pytest.raises(HashMismatch):
        backup.read_program(tmp_path, entry)


def test_retention_keeps_the_newest_good_sets_and_the_recent_ones() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)

    def age(name: str, days: int, good: bool = True) -> SetAge:
        return SetAge(name, now - timedelta(days=days), good)

    sets = [age("d1", 1), age("d8", 8), age("d15", 15), age("d22", 22, good=False), age("d29", 29)]
    # Keep the 2 newest good sets (d1, d8) and anything younger than 20 days (d15).
    assert plan_retention(sets, keep_last=2, keep_days=20, now=now) == ["d22", "d29"]
    assert plan_retention(sets, keep_last=4, keep_days=0, now=now) == ["d22"]
    # A failed set is never what keeps retention from deleting: the newest good stays.
    only_failed_recent = [age("bad", 1, good=False), age("good", 100)]
    assert plan_retention(only_failed_recent, keep_last=1, keep_days=0, now=now) == ["bad"]
    with pytest.raises(InputError):
        plan_retention(sets, keep_last=0, keep_days=10, now=now)


def test_the_manifest_round_trips_and_names_are_not_paths(tmp_path: Path) -> None:
    manifest = Manifest(name="20250601T000000Z-abc", created_at="2025-06-01T00:00:00+00:00",
                        cluster="localnet", status="verified")  # fmt: skip
    (tmp_path / manifest.name).mkdir()
    backup.write_manifest(tmp_path / manifest.name, manifest)
    assert backup.find_set(tmp_path, "latest") == manifest
    with pytest.raises(InputError):
        backup.find_set(tmp_path, "../etc")

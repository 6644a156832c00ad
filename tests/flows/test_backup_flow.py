"""The backup and restore runbooks on the localnet, the harness, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from pydantic import SecretStr
from sqlalchemy import Engine

from blocks import RecordsDatabase
from blocks.programs import ManagedProgram, ManagedPrograms
from flows.backup import backup_records_and_programs, restore_backup
from programs import loader
from runbooks.demo import DemoChain
from store import backup
from store.records import audit
from store.records import backups as backups_records
from store.records import proposals as proposals_records
from store.testing import create_scratch_database, drop_database

MEMBERS = [
    "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T",
    "HN7cABqLq46Es1jh92dQQisAq662SmxELLLsHHe4YWrH",
]


@pytest.fixture
def target_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    url = create_scratch_database()
    yield url
    drop_database(url)


async def test_backup_verifies_restores_and_refuses_a_corrupted_set(
    chain: DemoChain, block_names, records_db: Engine, target_url: str, tmp_path: Path
) -> None:
    for i in range(3):
        p = proposals_records.record_proposal(
            records_db, key=f"k-{i}", kind="upgrade", cluster="localnet", backend="keypair",
            governance="gov", program_id=str(chain.program_id), description=f"{i}",
            proposer="alice", members=MEMBERS, threshold=2, timelock_seconds=0,
        )  # fmt: skip
        proposals_records.record_approval(
            records_db, p.id, member=MEMBERS[0], decision="approve", accepted=True
        )
    prefix = block_names["cluster_block"]
    await ManagedPrograms(
        programs=[ManagedProgram(name="demo_vault", program_id=str(chain.program_id),
                                 expected_authority=str(chain.authority.pubkey()))]
    ).asave(f"{prefix}-programs", overwrite=True)  # fmt: skip
    await RecordsDatabase(url=SecretStr(target_url)).asave(f"{prefix}-target", overwrite=True)
    params = {
        "backup_dir": str(tmp_path / "backups"),
        "cluster_block": prefix,
        "programs_block": f"{prefix}-programs",
        "keep_last": 1,
        "keep_days": 0,
    }

    first = await backup_records_and_programs(**params)
    directory = Path(first["directory"])
    manifest = backup.read_manifest(directory)
    assert manifest.status == "verified" and manifest.verified_at
    assert manifest.records.tables["proposals"] == 3
    assert manifest.records.tables["approvals"] == 3
    # The program's bytes, with the hash the chain reports.
    [program] = manifest.programs
    assert program.verifiable_sha256 == loader.verifiable_hash(chain.binaries["v1"])
    assert backup.read_program(directory, program).rstrip(b"\0") == chain.binaries["v1"].rstrip(
        b"\0"
    )
    # No secret in the manifest: it names files and hashes, never the database URL.
    text = manifest.to_json()
    assert "://" not in text and "search_path" not in text and "/var/run" not in text
    [recorded] = backups_records.backups(records_db)
    assert recorded.name == manifest.name and recorded.status == "verified"

    # A second backup: retention (keep 1) removes the first set, and records that.
    second = await backup_records_and_programs(**params)
    assert second["removed"] == [manifest.name] and not directory.exists()
    assert {b.name: b.status for b in backups_records.backups(records_db)} == {
        manifest.name: "removed",
        second["name"]: "verified",
    }

    # Restore the newest set into a new database: identical row counts.
    restored = await restore_backup(
        target_block=f"{prefix}-target", backup_dir=params["backup_dir"]
    )
    assert restored["name"] == second["name"]
    assert restored["tables"] == second["tables"]
    assert restored["tables"]["proposals"] == 3 and restored["tables"]["backups"] == 1
    # Its report lists each table's row count.
    async with get_client() as client:
        [report] = await client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["restore-report"]))
        )
    assert "| table | rows |\n|---|---|\n" in str(report.data)
    assert "| proposals | 3 |" in str(report.data)

    # Corrupt the dump: the restore is refused by its hash before touching anything.
    dump = Path(second["directory"]) / backup.read_manifest(Path(second["directory"])).records.file
    data = bytearray(dump.read_bytes())
    data[-20] ^= 0x01
    dump.write_bytes(bytes(data))
    state = await restore_backup(
        target_block=f"{prefix}-target",
        backup_set=second["name"],
        backup_dir=params["backup_dir"],
        return_state=True,
    )
    assert state.is_failed() and "corrupted or altered: refused" in state.message
    refused = audit.audit_events(
        records_db, f"backup:{second['name']}", action="backup.restore_refused"
    )
    assert len(refused) == 1

"""`make demo` and `make demo-rollback` in this process, on a real Prefect API and a real
localnet: both run under the on-chain governance, and their RESULT names it; the
rollback's names the restored hash, equal to the archived one."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from programs.loader import verifiable_hash
from runbooks import demo as upgrade_demo
from runbooks import demo_migration
from store.records import audit

VAULTS = 40  # the scenario of `make demo-rollback`, with fewer accounts


@pytest.fixture
def records_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    from tasks.records import records_engine

    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_demo_rollback_runs_under_the_onchain_governance(
    prefect_api: None, records_db: Engine, demo_binaries: dict[str, bytes]
) -> None:
    result = await demo_migration.demo_migration(VAULTS, rollback=True)
    # The RESULT line is this dict as JSON.
    result = json.loads(json.dumps(result, sort_keys=True, default=str))
    v1_hash, v2_hash = (verifiable_hash(demo_binaries[v]) for v in ("v1", "v2"))
    assert result["backend"] == "onchain"
    assert result["upgrade"]["new_hash"] == v2_hash
    assert result["migration"]["accounts"]["verified"] == VAULTS
    rollback = result["rollback"]
    assert rollback["backend"] == "onchain" and rollback["onchain_proposal"]
    assert result["restored_hash"] == result["archived_hash"] == v1_hash
    assert rollback["restored_hash"] == rollback["archived_hash"] == v1_hash
    assert rollback["restored_archived_hash"] is True
    assert rollback["refused_first"] == f"{VAULTS} migrated accounts named"
    assert rollback["forced_over_accounts"] == VAULTS
    # Signed off under the governance's emergency threshold (4 of 5), not the block's.
    assert rollback["emergency_threshold"] == 4 == len(rollback["approvals"])
    assert rollback["kill_switch_engaged"] is False
    [verified] = audit.audit_events(records_db, action="rollback.verified")
    assert verified.details["restored_sha256"] == v1_hash


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_demo_result_names_the_onchain_backend(
    prefect_api: None, records_db: Engine, demo_binaries: dict[str, bytes]
) -> None:
    result = await upgrade_demo.demo()
    assert result["backend"] == "onchain" and result["onchain_proposal"]
    assert result["new_hash"] == verifiable_hash(demo_binaries["v2"])

"""The daily health check on a policy of the Squads backend: the multisig (serialized by
the official SDK into the localnet) is compared with the last run's, and its proposals
stuck Active or Approved-but-not-executed are flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from solders.keypair import Keypair
from sqlalchemy import Engine

from blocks import MultisigPolicy
from blocks.programs import ManagedProgram, ManagedPrograms
from domain.policy import Member
from flows.health import daily_health
from programs.squads import client as squads
from runbooks.demo import DemoChain
from store.records import health as health_records
from tests.squads_localnet import place_multisig

QUICK = {"slot_sample_seconds": 0.1, "ack_timeout_seconds": 0}
ALL = int(squads.ALL_PERMISSIONS)


def ago(**delta: float) -> int:
    return int((datetime.now(UTC) - timedelta(**delta)).timestamp())


@pytest.fixture
async def squads_blocks(prefect_api: None, chain: DemoChain, block_names) -> dict[str, Any]:
    prefix = block_names["cluster_block"]
    await ManagedPrograms(
        programs=[
            ManagedProgram(
                name="demo_vault",
                program_id=str(chain.program_id),
                expected_authority=str(chain.authority.pubkey()),
            )
        ]
    ).asave(f"{prefix}-programs", overwrite=True)
    members = [Keypair() for _ in range(3)]
    ms = place_multisig(chain.server.localnet, [(m, ALL) for m in members], time_lock=3600)
    await MultisigPolicy(
        members=[Member(name=f"m{i}", pubkey=str(m.pubkey())) for i, m in enumerate(members)],
        threshold=2,
        timelock_seconds=3600,
        min_timelock_seconds=0,
        backend="squads",
        squads_multisig=str(ms.address),
    ).asave(f"{prefix}-squads", overwrite=True)
    return {
        "ms": ms,
        "args": {
            "cluster_block": prefix,
            "programs_block": f"{prefix}-programs",
            "policy_block": f"{prefix}-squads",
            **QUICK,
        },
    }


def squads_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    return [f for f in result["findings"] if f["check"].startswith("squads")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_config_changes_and_stuck_proposals_are_flagged(
    squads_blocks: dict[str, Any], records_db: Engine
) -> None:
    ms, args = squads_blocks["ms"], squads_blocks["args"]
    address = str(ms.address)
    ms.stage_proposal(1, "Executed", ago(hours=72))
    ms.stage_proposal(2, "Active", ago(minutes=10))
    ms.stage_proposal(3, "Approved", ago(minutes=10))  # in its 1 h time lock
    ms.put()

    first = await daily_health(**args)
    rows = squads_rows(first)
    assert [(r["check"], r["level"]) for r in rows] == [
        ("squads-config", "info"),
        ("squads-proposal", "info"),
    ], rows
    assert "baseline" in rows[0]["message"] and "2 open, none stuck" in rows[1]["message"]
    recorded = health_records.health_reports(records_db, "localnet", limit=1)[0]
    digest = next(f for f in recorded.findings if f["check"] == "squads-config")["digest"]
    assert len(digest) == 64

    second = await daily_health(**args)  # nothing changed: no finding above info
    assert all(r["level"] == "info" for r in squads_rows(second))
    assert "unchanged" in squads_rows(second)[0]["message"]

    # The threshold changes; proposal 2 sits Active for 30 h; 3 was approved 30 h ago
    # (its 1 h time lock long over) and never executed.
    ms.threshold = 3
    ms.stage_proposal(2, "Active", ago(hours=30))
    ms.stage_proposal(3, "Approved", ago(hours=30))
    ms.put()
    third = await daily_health(**args)
    assert third["level"] == "warning"
    warnings = {(r["subject"], r["message"].split(" ")[0]) for r in squads_rows(third)}
    assert warnings == {
        (address, "the"),  # "the multisig's config changed ..."
        (f"{address} proposal 2", "Active"),
        (f"{address} proposal 3", "Approved,"),
    }, squads_rows(third)
    assert all(r["level"] == "warning" for r in squads_rows(third))

    # Executed: nothing left to flag; the changed config was the third run's, so it is
    # the baseline this run compares with.
    ms.stage_proposal(2, "Executed", ago(hours=1))
    ms.stage_proposal(3, "Executed", ago(hours=1))
    ms.put()
    fourth = await daily_health(**args)
    assert [r["level"] for r in squads_rows(fourth)] == ["info", "info"], squads_rows(fourth)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_policy_naming_no_multisig_or_a_wrong_account_is_a_finding(
    squads_blocks: dict[str, Any], chain: DemoChain, records_db: Engine
) -> None:
    args = squads_blocks["args"]
    policy = await MultisigPolicy.aload(args["policy_block"])
    policy.squads_multisig = ""
    await policy.asave(args["policy_block"], overwrite=True)
    result = await daily_health(**args)
    (row,) = squads_rows(result)
    assert row["level"] == "warning" and "names no multisig" in row["message"]

    policy.squads_multisig = str(chain.authority.pubkey())  # a wallet, not a multisig
    await policy.asave(args["policy_block"], overwrite=True)
    state = await daily_health(**args, return_state=True)
    assert state.is_failed()
    report = health_records.health_reports(records_db, "localnet", limit=1)[0]
    (row,) = [f for f in report.findings if f["check"] == "squads-config"]
    assert row["level"] == "critical" and "not the Squads program" in row["message"]

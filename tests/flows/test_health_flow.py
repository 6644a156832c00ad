"""The daily health runbook on the localnet, the Prefect harness and the records database."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from prefect.client.orchestration import get_client
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from sqlalchemy import Engine

from blocks import SlackChannel, SolanaCluster
from blocks.programs import FeePayer, ManagedProgram, ManagedPrograms
from flows.health import daily_health
from programs import loader, send
from runbooks.demo import DemoChain, write_buffer
from runbooks.slack_handler import ACTION_PREFIX, handle, signature
from store.models import MigrationRun
from store.records import health as health_records
from store.records import kill_switch, proposals
from tests.stand_ins.slack_stub import SlackStub

QUICK = {"slot_sample_seconds": 0.1, "ack_timeout_seconds": 0}


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    with SlackStub() as stub:
        yield stub


@pytest.fixture
async def ops_blocks(prefect_api: None, chain: DemoChain, block_names, slack) -> dict[str, str]:
    """Cluster block (from block_names), a managed-programs block and a Slack block."""
    prefix = block_names["cluster_block"]
    await ManagedPrograms(
        programs=[
            ManagedProgram(
                name="demo_vault",
                program_id=str(chain.program_id),
                expected_authority=str(chain.authority.pubkey()),
            )
        ],
        fee_payers=[FeePayer(label="fee payer", address=str(chain.authority.pubkey()))],
    ).asave(f"{prefix}-programs", overwrite=True)
    await SlackChannel(bot_token=slack.token, channel="#ops", api_base_url=slack.base_url).asave(
        f"{prefix}-slack", overwrite=True
    )
    return {
        "cluster_block": prefix,
        "programs_block": f"{prefix}-programs",
        "slack_block": f"{prefix}-slack",
    }


async def unauthorised_upgrade(chain: DemoChain) -> str:
    """Upgrade straight through the loader with the authority key: nobody proposed it."""
    buffer = await write_buffer(chain, chain.binaries["v2"])
    async with AsyncClient(chain.url) as client:
        ix = loader.upgrade(
            chain.program_id, buffer, chain.authority.pubkey(), chain.authority.pubkey()
        )
        await send.send_and_confirm(client, [ix], chain.authority)
    return loader.verifiable_hash(chain.binaries["v2"])


async def change_authority(chain: DemoChain) -> Keypair:
    intruder = Keypair()
    async with AsyncClient(chain.url) as client:
        ix = loader.set_authority_checked(
            loader.programdata_address(chain.program_id),
            chain.authority.pubkey(),
            intruder.pubkey(),
        )
        await send.send_and_confirm(client, [ix], chain.authority, [intruder])
    return intruder


async def run_artifact(run_id: uuid.UUID, key: str) -> dict:
    """The artifact ``key`` a run published (through the same API call the UI makes)."""
    async with get_client() as client:
        resp = await client._client.post(
            "/artifacts/filter",
            json={
                "artifacts": {"flow_run_id": {"any_": [str(run_id)]}, "key": {"any_": [key]}},
                "limit": 10,
            },
        )
    found = resp.json()
    assert len(found) == 1, found
    return found[0]


def finding(report: health_records.HealthReportRecord, check: str) -> dict:
    return next(f for f in report.findings if f["check"] == check)


async def test_health_finds_an_unauthorised_upgrade_and_a_changed_authority(
    chain: DemoChain, ops_blocks, records_db: Engine, slack: SlackStub
) -> None:
    program = str(chain.program_id)
    v1 = loader.verifiable_hash(chain.binaries["v1"])

    # A healthy day: everything info, the hash recorded as the baseline, no Slack alert.
    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert result["level"] == "info"
    assert {f["check"] for f in result["findings"]} >= {
        "slot", "version", "database", "authority", "hash", "fee-payer", "migrations",
    }  # fmt: skip
    assert health_records.get_program_hash(records_db, "localnet", program).hash == v1
    assert slack.messages == []

    # Someone upgrades the program outside any proposal: critical, and the run fails.
    v2 = await unauthorised_upgrade(chain)
    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_failed()
    assert "UNEXPECTED UPGRADE" in state.message
    report = health_records.health_reports(records_db, "localnet", limit=1)[0]
    assert report.level == "critical"
    hash_finding = finding(report, "hash")
    assert hash_finding["level"] == "critical" and v1 in hash_finding["message"]
    assert v2 in hash_finding["message"]
    # The baseline is kept: the alert repeats until someone investigates.
    assert health_records.get_program_hash(records_db, "localnet", program).hash == v1
    assert len(slack.messages) == 1 and "CRITICAL" in slack.messages[0]["text"]
    assert any("UNEXPECTED UPGRADE" in str(b) for b in slack.messages[0]["blocks"])

    # The authority moves outside the key-rotation runbook: critical too.
    intruder = await change_authority(chain)
    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_failed()
    report = health_records.health_reports(records_db, "localnet", limit=1)[0]
    authority = finding(report, "authority")
    assert authority["level"] == "critical"
    assert str(intruder.pubkey()) in authority["message"]

    # The run's table artifact holds the findings, the worst first.
    rows = json.loads(
        (await run_artifact(state.state_details.flow_run_id, "health-localnet"))["data"]
    )
    assert [r["level"] for r in rows[:2]] == ["critical", "critical"]
    assert rows[-1]["level"] == "info"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_executed_proposal_explains_a_code_change(
    chain: DemoChain, ops_blocks, records_db: Engine
) -> None:
    program = str(chain.program_id)
    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_completed()
    v2 = await unauthorised_upgrade(chain)
    proposal = proposals.record_proposal(
        records_db,
        key=f"upgrade-{uuid.uuid4().hex}",
        kind="upgrade",
        cluster="localnet",
        backend="keypair",
        governance=str(chain.authority.pubkey()),
        program_id=program,
        buffer=str(Keypair().pubkey()),
        buffer_hash=v2,
        description="v2",
        proposer="tester",
        members=[str(m.pubkey()) for m in chain.members],
        threshold=3,
        timelock_seconds=0,
    )
    proposals.record_execution(records_db, proposal.id, outcome="upgraded", new_hash=v2)
    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_completed(), state.message
    hash_finding = finding(
        health_records.health_reports(records_db, "localnet", limit=1)[0], "hash"
    )
    assert hash_finding["level"] == "info" and f"proposal #{proposal.id}" in hash_finding["message"]
    assert health_records.get_program_hash(records_db, "localnet", program).hash == v2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_warnings_alert_slack_and_announce_expiring_timelocks(
    chain: DemoChain, ops_blocks, records_db: Engine, slack: SlackStub
) -> None:
    now = datetime.now(UTC)
    # A fee payer below its threshold, a migration without progress for a day, and a
    # proposal whose timelock ends within the hour.
    managed = await ManagedPrograms.aload(ops_blocks["programs_block"])
    managed.fee_payers.append(
        FeePayer(label="empty payer", address=str(Keypair().pubkey()), critical_below_sol=0)
    )
    await managed.asave(ops_blocks["programs_block"], overwrite=True)
    from sqlalchemy.orm import Session

    with Session(records_db) as session, session.begin():
        session.add(
            MigrationRun(
                key="m-1", cluster="localnet", program_id=str(chain.program_id),
                migrator="demo", from_version=1, to_version=2, program_hash="a" * 64,
                status="running", created_at=now - timedelta(days=1),
                updated_at=now - timedelta(days=1),
            )
        )  # fmt: skip
    proposal = proposals.record_proposal(
        records_db,
        key="timelocked",
        kind="upgrade",
        cluster="localnet",
        backend="keypair",
        governance=str(chain.authority.pubkey()),
        program_id=str(chain.program_id),
        description="v2",
        proposer="tester",
        members=[str(m.pubkey()) for m in chain.members],
        threshold=3,
        timelock_seconds=3600,
    )
    proposals.mark_threshold_met(records_db, proposal.id, at=now - timedelta(minutes=30))
    kill_switch.engage_kill_switch(
        records_db, "localnet", str(chain.program_id), reason="drill", actor="on-call"
    )

    state = await daily_health(**ops_blocks, **QUICK, return_state=True)
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert result["level"] == "warning"
    warnings = {f["check"] for f in result["findings"] if f["level"] == "warning"}
    assert warnings == {"fee-payer", "migrations", "kill-switch"}
    texts = [m["text"] for m in slack.messages]
    assert any(t.startswith("Health WARNING on localnet") for t in texts)
    assert any(f"Proposal #{proposal.id}" in t and "timelock ends" in t for t in texts)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_slack_unreachable_leaves_the_run_green(
    chain: DemoChain, ops_blocks, records_db: Engine
) -> None:
    dead = f"{ops_blocks['cluster_block']}-dead-slack"
    # A port nothing listens on: every post fails, is retried, then logged.
    await SlackChannel(
        bot_token="xoxb-x", channel="#ops", api_base_url="http://127.0.0.1:9/api/"
    ).asave(dead, overwrite=True)
    managed = await ManagedPrograms.aload(ops_blocks["programs_block"])
    managed.fee_payers[0].warn_below_sol = 10_000  # a warning, so an alert is posted
    await managed.asave(ops_blocks["programs_block"], overwrite=True)
    state = await daily_health(**{**ops_blocks, "slack_block": dead}, **QUICK, return_state=True)
    assert state.is_completed(), state.message
    assert (await state.aresult())["level"] == "warning"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_missing_configuration_and_a_dead_rpc_are_findings_not_crashes(
    chain: DemoChain, ops_blocks, records_db: Engine
) -> None:
    state = await daily_health(
        cluster_block=ops_blocks["cluster_block"],
        programs_block="no-such-block",
        **QUICK,
        return_state=True,
    )
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert result["level"] == "warning"
    assert any(f["check"] == "config" for f in result["findings"])

    dead = f"{ops_blocks['cluster_block']}-dead-rpc"
    await SolanaCluster(
        cluster="devnet", rpc_urls=["http://127.0.0.1:9"], rpc_retry_seconds=1
    ).asave(dead)
    state = await daily_health(**{**ops_blocks, "cluster_block": dead}, **QUICK, return_state=True)
    assert state.is_failed() and "no RPC endpoint" in state.message
    assert "endpoint 1 (http://127.0.0.1:9) refused the connection" in state.message
    report = health_records.health_reports(records_db, "devnet", limit=1)[0]
    assert report.level == "critical" and finding(report, "database")["level"] == "info"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_on_call_acknowledges_a_critical_alert_from_slack(
    chain: DemoChain, ops_blocks, records_db: Engine, slack: SlackStub
) -> None:
    """The alert's Acknowledge button, clicked in Slack, resumes the run as that user."""
    secret = "test-signing-secret"
    await daily_health(**ops_blocks, **QUICK, return_state=True)  # the baseline
    await change_authority(chain)
    run = asyncio.create_task(
        daily_health(
            **ops_blocks, slot_sample_seconds=0.1, ack_timeout_seconds=60, return_state=True
        )
    )
    deadline = asyncio.get_running_loop().time() + 60
    while not slack.messages:
        assert asyncio.get_running_loop().time() < deadline, "no alert posted"
        await asyncio.sleep(0.2)
    [alert] = slack.messages
    [button] = [
        e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]
        if e.get("action_id", "").startswith(ACTION_PREFIX)
    ]  # fmt: skip
    body = urlencode(
        {
            "payload": json.dumps(
                {
                    "type": "block_actions",
                    "user": {"id": "U0ONCALL", "username": "alice"},
                    "actions": [{"action_id": button["action_id"], "value": button["value"]}],
                }
            )
        }
    ).encode()
    stamp = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature(secret, stamp, body),
    }
    # The pause form must exist before a resume is accepted: retry until it does.
    while True:
        _, reply = await asyncio.to_thread(handle, secret, headers, body, members={"U0ONCALL"})
        if "Acknowledged" in reply.get("text", ""):
            break
        assert asyncio.get_running_loop().time() < deadline, reply
        await asyncio.sleep(0.3)
    state = await asyncio.wait_for(run, timeout=60)
    assert state.is_failed()  # acknowledged, and still failed: the finding is critical
    report = health_records.health_reports(records_db, "localnet", limit=1)[0]
    assert report.acknowledged_by == "slack:U0ONCALL (alice)"
    assert report.acknowledged_at is not None

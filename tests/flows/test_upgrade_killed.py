"""The upgrade flow (onchain backend) killed with SIGKILL during a sign-off pause, while
relaying a sign-off, and during the timelock, then restarted for the same proposal: it
completes, no sign-off is lost or counted twice, one execute lands, the records agree
with the chain.

The first run is a subprocess against the session's Prefect API and the localnet of this
process; the restart runs the same flow run (same run id, so the same proposal key) here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from landed import count_landed
from prefect.client.orchestration import PrefectClient, get_client
from prefect.flow_engine import run_flow_async
from prefect.settings import get_current_settings
from prefect.states import Scheduled
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_upgrade_onchain import pda_buffer

from blocks import SlackChannel
from core import approval
from flows._signoff import FOUND_ON_CHAIN, approval_subject, signoff_key_prefix
from flows.upgrade import proposal_key, upgrade_program
from programs import loader
from programs.anchor import instruction_data
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Proposal, ProposalStatus
from runbooks.console import resume_with_input, sign_off, wait_for_pause
from runbooks.demo import (
    DemoChain,
    save_blocks,
    setup_governance,
)
from store.records import archives, proposals, slack_threads, transactions
from tasks.records import proposal_by_key
from tests.stand_ins.slack_stub import SlackStub

REPO = Path(__file__).resolve().parents[2]
__all__ = ["pda_buffer"]  # the on-chain upgrade tests' fixture, on this module's gov_blocks

TIMELOCK = 6

# Runs one flow run of the upgrade; with KILL_AT_ACCEPTED_RECORD=n the process kills
# itself just before recording its n-th accepted sign-off (after the relay landed), with
# KILL_BEFORE_ANNOUNCE once the proposal is recorded and created on chain, with
# KILL_AFTER_EXECUTE_SENT right after the execution's transaction first left for the RPC.
FLOW_SCRIPT = """
import asyncio, json, os, signal, sys
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow_async
from flows.upgrade import upgrade_program
from tasks import records

import flows.upgrade

if os.environ.get("KILL_BEFORE_ANNOUNCE"):
    async def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    flows.upgrade.announce = die

kill_at = int(os.environ.get("KILL_AT_ACCEPTED_RECORD", "0"))
if kill_at:
    original = records.record_approval
    seen = [0]
    def record_or_die(proposal_id, **fields):
        if fields.get("accepted"):
            seen[0] += 1
            if seen[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return original(proposal_id, **fields)
    records.record_approval = record_or_die

if os.environ.get("KILL_AFTER_EXECUTE_SENT"):
    import programs.send
    import tasks.chain
    original_send, original_write = programs.send._send, tasks.chain.send_write
    executing = [False]
    async def send_write(client, cluster, purpose, *args, **kwargs):
        executing[0] = purpose.startswith("execute:")
        return await original_write(client, cluster, purpose, *args, **kwargs)
    async def send_then_die(*args, **kwargs):
        outcome = await original_send(*args, **kwargs)
        if executing[0]:
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome
    tasks.chain.send_write = send_write
    programs.send._send = send_then_die
    import tasks.governance
    tasks.governance.send_write = send_write

async def main():
    async with get_client() as client:
        run = await client.read_flow_run(UUID(sys.argv[1]))
    await run_flow_async(upgrade_program, run, json.loads(sys.argv[2]), return_type="state")

asyncio.run(main())
"""


@pytest.fixture
async def gov_blocks(prefect_api: None, chain: DemoChain) -> dict[str, str]:
    await setup_governance(chain, timelock_seconds=TIMELOCK)
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    return await save_blocks(chain, prefix=prefix, timelock_seconds=TIMELOCK, backend="onchain")


def sign(member: Keypair, proposal: proposals.ProposalRecord) -> dict[str, str]:
    message = approval_subject(proposal).message("approve")
    return {"member": str(member.pubkey()), "signature": str(approval.sign(member, message))}


def onchain_proposal(chain: DemoChain, proposal: proposals.ProposalRecord) -> Proposal:
    assert proposal.onchain_address is not None
    found = chain.server.localnet.get_account(Pubkey.from_string(proposal.onchain_address))
    assert found is not None
    return Proposal.decode(bytes(found.data))


def programdata_hash(chain: DemoChain) -> str:
    found = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert found is not None
    return loader.programdata_hash(bytes(found.data))


def count_executes(chain: DemoChain) -> Counter[str]:
    """Every upgrade_manager execute_upgrade that lands, per proposal account."""
    return count_landed(
        chain.server.localnet, um.PROGRAM_ID, instruction_data("execute_upgrade"), 1
    )


class Run:
    """One flow run of the upgrade: started in a subprocess, restarted in this process."""

    def __init__(self, chain: DemoChain, names: dict[str, str], buffer: str) -> None:
        self.chain = chain
        self.parameters = {
            "program_id": str(chain.program_id),
            "buffer": buffer,
            "description": "upgrade killed and restarted",
            "proposer": "tester",
            **names,
        }
        self.id: UUID | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, client: PrefectClient, **env: str) -> None:
        deployment = await upgrade_program.ato_deployment(
            name=f"killed-{uuid.uuid4().hex[:8]}", parameters=self.parameters
        )
        flow_run = await client.create_flow_run_from_deployment(await deployment.apply())
        self.id = flow_run.id
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FLOW_SCRIPT, str(flow_run.id), json.dumps(self.parameters)],
            cwd=REPO,
            env={
                **os.environ,
                "PREFECT_API_URL": get_current_settings().api.url or "",
                "PYTHONPATH": str(REPO),
                "PREFECT_LOGGING_LEVEL": "WARNING",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "ended before the kill"
        self.proc.send_signal(signal.SIGKILL)  # no cleanup, no finally: a crash
        self.proc.wait(timeout=30)

    def proposal(self) -> proposals.ProposalRecord:
        key = proposal_key(
            "localnet", str(self.chain.program_id), self.parameters["buffer"], str(self.id)
        )
        found = proposal_by_key(key)
        assert found is not None
        return found

    async def restart(self, client: PrefectClient) -> asyncio.Task[Any]:
        """Run the same flow run again, as a retry of the crashed run would."""
        assert self.id is not None
        await client.set_flow_run_state(self.id, Scheduled(), force=True)
        run = await client.read_flow_run(self.id)
        return asyncio.create_task(
            run_flow_async(upgrade_program, run, self.parameters, return_type="state")
        )


def assert_agrees(chain: DemoChain, records_db: Engine, run: Run, landed: Counter[str]) -> None:
    proposal = run.proposal()
    accepted = [a for a in proposals.approvals(records_db, proposal.id) if a.accepted]
    members = [a.member for a in accepted]
    assert sorted(members) == sorted(str(m.pubkey()) for m in chain.members[:3])  # once each
    assert proposal.status == "executed", proposal.status
    on_chain = onchain_proposal(chain, proposal)
    assert on_chain.status == ProposalStatus.EXECUTED
    assert bin(on_chain.approvals).count("1") == 3
    assert sum(landed.values()) == 1  # one execute
    assert programdata_hash(chain) == loader.verifiable_hash(chain.binaries["v2"])


async def answered(client: PrefectClient, run: Run, after_key: str | None, entry: dict) -> str:
    assert run.id is not None
    return await sign_off(client, run.id, entry, after_key=after_key)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_during_a_signoff_pause_an_entry_submitted_meanwhile_counts_once(
    chain: DemoChain, gov_blocks: dict[str, str], records_db: Engine, pda_buffer: str
) -> None:
    m = chain.members
    landed = count_executes(chain)
    run = Run(chain, gov_blocks, pda_buffer)
    async with get_client() as client:
        await run.start(client)
        assert run.id is not None
        await wait_for_pause(client, run.id, timeout_seconds=90)
        proposal = run.proposal()
        first = await answered(client, run, None, sign(m[0], proposal))
        paused = await wait_for_pause(client, run.id, not_key=first)
        second = paused.state.state_details.pause_key if paused.state else None
        run.kill()
        # The member submits to the pause of the dead process through the Resume API.
        await resume_with_input(client, run.id, sign(m[1], proposal))
        assert len([a for a in proposals.approvals(records_db, proposal.id) if a.accepted]) == 1

        flow = await run.restart(client)
        # The restarted run picks the entry up, then pauses under a key never used.
        third = await answered(client, run, second, sign(m[2], proposal))
        assert third not in (first, second)
        assert third.startswith(signoff_key_prefix(proposal.id))
        state = await asyncio.wait_for(flow, 120)
    assert state.is_completed(), state
    assert_agrees(chain, records_db, run, landed)


@pytest.mark.parametrize("entry_kept", [True, False], ids=["entry-kept", "entry-gone"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_between_the_relay_and_its_record_the_vote_is_recorded_once(
    chain: DemoChain,
    gov_blocks: dict[str, str],
    records_db: Engine,
    pda_buffer: str,
    entry_kept: bool,
) -> None:
    m = chain.members
    landed = count_executes(chain)
    run = Run(chain, gov_blocks, pda_buffer)
    async with get_client() as client:
        await run.start(client, KILL_AT_ACCEPTED_RECORD="2")
        assert run.id is not None
        await wait_for_pause(client, run.id, timeout_seconds=90)
        proposal = run.proposal()
        key = await answered(client, run, None, sign(m[0], proposal))
        second = await answered(client, run, key, sign(m[1], proposal))
        assert run.proc is not None
        assert run.proc.wait(timeout=60) == -signal.SIGKILL  # killed itself at the record
        proposal = run.proposal()
        # The vote landed on chain; the records lack it.
        assert bin(onchain_proposal(chain, proposal).approvals).count("1") == 2
        assert [a.member for a in proposals.approvals(records_db, proposal.id)] == [
            str(m[0].pubkey())
        ]
        if not entry_kept:  # only the chain knows of the vote now
            await client.delete_flow_run_input(run.id, f"paused-{second}-response")

        flow = await run.restart(client)
        await answered(client, run, second, sign(m[2], proposal))
        state = await asyncio.wait_for(flow, 120)
    assert state.is_completed(), state
    assert_agrees(chain, records_db, run, landed)
    [recorded] = [
        a for a in proposals.approvals(records_db, proposal.id) if a.member == str(m[1].pubkey())
    ]
    if entry_kept:  # reviewed again: the relay found the vote and sent nothing
        assert recorded.signature == sign(m[1], proposal)["signature"]
        assert recorded.reason is None
    else:
        assert recorded.signature is None and recorded.reason == FOUND_ON_CHAIN


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_during_the_timelock_the_restart_executes_once(
    chain: DemoChain,
    gov_blocks: dict[str, str],
    records_db: Engine,
    pda_buffer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "120")  # a veto pause, no suspend
    m = chain.members
    landed = count_executes(chain)
    run = Run(chain, gov_blocks, pda_buffer)
    async with get_client() as client:
        await run.start(client)
        assert run.id is not None
        await wait_for_pause(client, run.id, timeout_seconds=90)
        proposal = run.proposal()
        key = None
        for member in m[:3]:
            key = await answered(client, run, key, sign(member, proposal))
        timelock = await wait_for_pause(client, run.id, not_key=key)
        assert timelock.state is not None
        assert (timelock.state.state_details.pause_key or "").startswith("timelock-")
        run.kill()
        assert programdata_hash(chain) != loader.verifiable_hash(chain.binaries["v2"])
        started = time.monotonic()
        state = await asyncio.wait_for(await run.restart(client), 120)
    assert state.is_completed(), state
    assert time.monotonic() - started < TIMELOCK + 60
    assert_agrees(chain, records_db, run, landed)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_after_recording_the_restart_announces_the_proposal_once(
    chain: DemoChain, gov_blocks: dict[str, str], records_db: Engine, pda_buffer: str
) -> None:
    m = chain.members
    landed = count_executes(chain)
    with SlackStub() as slack:
        slack_block = f"{gov_blocks['policy_block']}-slack"
        await SlackChannel(
            bot_token=slack.token, channel="#upgrades", api_base_url=slack.base_url
        ).asave(slack_block, overwrite=True)
        run = Run(chain, {**gov_blocks, "slack_block": slack_block}, pda_buffer)
        async with get_client() as client:
            await run.start(client, KILL_BEFORE_ANNOUNCE="1")
            assert run.proc is not None
            assert run.proc.wait(timeout=90) == -signal.SIGKILL
            proposal = run.proposal()  # recorded, created on chain, never announced
            assert proposal.onchain_address is not None
            assert slack.messages == []
            assert slack_threads.get_slack_thread(records_db, proposal.id) is None

            flow = await run.restart(client)
            key = None
            for member in m[:3]:
                key = await answered(client, run, key, sign(member, proposal))
            state = await asyncio.wait_for(flow, 120)
    assert state.is_completed(), state
    assert_agrees(chain, records_db, run, landed)
    [head] = [msg for msg in slack.messages if "thread_ts" not in msg]  # announced once
    assert "Upgrade proposal 1" in head["text"]
    assert slack_threads.get_slack_thread(records_db, proposal.id).ts == head["ts"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_right_after_the_execute_is_sent_the_restart_records_it(
    chain: DemoChain,
    gov_blocks: dict[str, str],
    records_db: Engine,
    pda_buffer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The execute left for the RPC and the process died before it saw the answer: the
    restart finds the transaction in the write-ahead journal, records it with the real
    old and new hashes, archives nothing more and sends nothing more."""
    monkeypatch.setenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "120")
    m = chain.members
    landed = count_executes(chain)
    v1 = programdata_hash(chain)
    v2 = loader.verifiable_hash(chain.binaries["v2"])
    run = Run(chain, gov_blocks, pda_buffer)
    async with get_client() as client:
        await run.start(client, KILL_AFTER_EXECUTE_SENT="1")
        assert run.id is not None
        await wait_for_pause(client, run.id, timeout_seconds=90)
        proposal = run.proposal()
        key = None
        for member in m[:3]:
            key = await answered(client, run, key, sign(member, proposal))
        assert run.proc is not None
        assert run.proc.wait(timeout=120) == -signal.SIGKILL
        # The execute landed; the records know its signature only from the journal.
        assert programdata_hash(chain) == v2
        assert proposals.get_execution(records_db, proposal.id) is None
        (sent,) = transactions.transactions(records_db, f"execute:proposal:{proposal.id}")
        assert sent.status == "sent" and sent.details is not None
        assert sent.details["sha256"] == v1
        state = await asyncio.wait_for(await run.restart(client), 120)
    assert state.is_completed(), state
    assert_agrees(chain, records_db, run, landed)
    execution = proposals.get_execution(records_db, proposal.id)
    assert execution is not None and execution.outcome == "upgraded"
    assert execution.signature == sent.signature
    assert (execution.old_hash, execution.new_hash) == (v1, v2)
    (settled,) = transactions.transactions(records_db, f"execute:proposal:{proposal.id}")
    assert settled.status == "landed"
    # The binary archived as "the one it replaced" is v1, once; never v2.
    program = str(chain.program_id)
    assert archives.get_archive(records_db, "localnet", program, v1) is not None
    assert archives.get_archive(records_db, "localnet", program, v2) is None

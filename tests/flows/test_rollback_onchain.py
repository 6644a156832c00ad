"""The emergency rollback with the onchain backend: an emergency-upgrade proposal of
upgrade_manager, signed off under the governance's emergency threshold and timelock and
executed by the program, so no upgrade key is held by anyone.

A real Prefect API, a real localnet with upgrade_manager deployed through the loader, a
3-of-5 governance (emergency: 4 of 5, 1 s) whose PDA is demo_vault's upgrade authority,
and a records database. The authority block the flow is given is never saved: loading it
would fail the run, so every passing run proves no hot key was read.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cluster_like import CLUSTER_LIKE
from landed import (
    assert_journal_holds,
    assert_landed_as_the_mode_lands,
    instructions_in,
    landed_signatures,
    landed_since,
)
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from pydantic import SecretStr
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select, update

from blocks import MultisigPolicy, SlackChannel, SolanaCluster
from core import approval
from core.errors import HashMismatch, InputError, PolicyViolation, ProposalClosed, RecordsError
from domain.governance import onchain_approval_line
from flows._signoff import approval_subject, signing_subject
from flows.rollback import emergency_rollback
from programs import loader
from programs.anchor import instruction_data
from programs.demo_vault import client as vault
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Governance, Proposal, ProposalKind, ProposalStatus
from runbooks.console import pause_description, sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run, save_blocks, setup_governance
from runbooks.demo_migration import (
    create_config,
    current_onchain_message,
    current_proposal_message,
    save_pause_block,
    upgrade_directly,
)
from store.db import session_scope
from store.models.archives import ProgramArchive
from store.models.proposals import Proposal as ProposalRow
from store.records import audit, proposals
from store.records import kill_switch as kill_switch_records
from store.records.kill_switch import RELEASE_KIND
from tasks.archive import archive_program
from tests.stand_ins.slack_stub import SlackStub

EMERGENCY = 4  # setup_governance: threshold 3 of 5, emergency 4 of 5


def um_instructions(landed: list[Any], name: str) -> Any:
    """Landed upgrade_manager ``name`` instructions, per proposal account."""
    return instructions_in(landed, um.PROGRAM_ID, instruction_data(name), 1)


def account(chain: DemoChain, address: Pubkey) -> bytes:
    found = chain.server.localnet.get_account(address)
    assert found is not None, address
    return bytes(found.data)


def programdata_hash(chain: DemoChain) -> str:
    return loader.programdata_hash(account(chain, loader.programdata_address(chain.program_id)))


def upgrade_authority(chain: DemoChain) -> Pubkey | None:
    state = loader.decode_state(account(chain, loader.programdata_address(chain.program_id)))
    assert isinstance(state, loader.ProgramData)
    return state.authority


def lamports(chain: DemoChain, key: Pubkey) -> int:
    found = chain.server.localnet.get_account(key)
    return found.lamports if found is not None else 0


def paused(chain: DemoChain, config: Pubkey) -> bool:
    return vault.Config.decode(account(chain, config)).paused


@pytest.fixture
async def rolled_forward(prefect_api: None, chain: DemoChain, records_db: Engine) -> dict[str, Any]:
    """v1 archived, v2 live, then the program handed to a governance; blocks with the
    onchain backend and an authority block that does not exist."""
    program_id = str(chain.program_id)
    await archive_program(SolanaCluster(cluster="localnet", rpc_urls=[chain.url]), program_id)
    await upgrade_directly(chain, chain.binaries["v2"])
    await setup_governance(chain, timelock_seconds=1)
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    names = await save_blocks(chain, prefix=prefix, timelock_seconds=1, backend="onchain")
    names["authority_block"] = f"{prefix}-no-upgrade-key"  # never saved
    config = await create_config(chain)
    pause = await save_pause_block(chain, config, f"{prefix}-pause")
    return {
        "names": names,
        "config": config,
        "params": {
            "program_id": program_id,
            "reason": "v2 drains vaults",
            "proposer": "on-call",
            "program_pause_block": pause,
            **names,
        },
    }


Round = Callable[[uuid.UUID, str], Awaitable[list[dict[str, Any]]]]


async def drive(params: dict[str, Any], rounds: list[Round]) -> tuple[State, list[str]]:
    """Run the rollback; at its n-th pause ``rounds[n](run_id, form)`` gives the entries
    to submit, one per pause. Returns the final state and each round's form."""
    tag = f"test-{uuid.uuid4().hex[:12]}"
    with tags(tag):
        flow = asyncio.ensure_future(emergency_rollback(**params, return_state=True))
    run_id = await find_run(tag)
    forms: list[str] = []
    key: str | None = None
    async with get_client() as client:
        for answer in rounds:
            run = await wait_for_pause(client, run_id, not_key=key, timeout_seconds=120)
            assert run.state is not None
            form = await pause_description(client, run_id, run.state.state_details.pause_key or "")
            forms.append(form)
            for entry in await answer(run_id, form):
                key = await sign_off(client, run_id, entry, after_key=key)
    return await asyncio.wait_for(flow, timeout=120), forms


def entries(members: list[Keypair], line: str, decision: str = "approve") -> list[dict[str, Any]]:
    return [
        {
            "member": str(m.pubkey()),
            "decision": decision,
            "signature": str(approval.sign(m, line)),
        }
        for m in members
    ]


def rollback_row(records_db: Engine) -> proposals.ProposalRecord:
    with session_scope(records_db) as session:
        ids = session.scalars(select(ProposalRow.id).where(ProposalRow.kind == "rollback")).all()
    [proposal_id] = ids
    proposal = proposals.get_proposal(records_db, proposal_id)
    assert proposal is not None
    return proposal


def onchain(chain: DemoChain, proposal: proposals.ProposalRecord) -> Proposal:
    assert proposal.onchain_address is not None
    return Proposal.decode(account(chain, Pubkey.from_string(proposal.onchain_address)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("behaviour", [None, CLUSTER_LIKE], ids=["instant", "cluster"])
async def test_onchain_rollback_restores_the_archived_hash_without_an_upgrade_key(
    chain: DemoChain, rolled_forward: dict[str, Any], records_db: Engine
) -> None:
    m = chain.members
    mark = landed_signatures(chain.server.localnet)
    program_id = str(chain.program_id)
    v1_hash, v2_hash = (loader.verifiable_hash(chain.binaries[v]) for v in ("v1", "v2"))
    assert programdata_hash(chain) == v2_hash
    pda = um.authority_address(chain.governance)  # type: ignore[arg-type]

    async def rollback_round(run_id: uuid.UUID, form: str) -> list[dict[str, Any]]:
        line = await current_onchain_message(run_id, "rollback", chain.url)
        proposal = rollback_row(records_db)
        # The program's own line names the kind: an upgrade-shaped line does not count.
        assert "; kind: emergency-upgrade; " in line and proposal.buffer_hash in line
        upgrade_line = approval_subject(proposal).message("approve")
        assert upgrade_line != line
        return entries([m[0]], upgrade_line) + entries(m[1:5], line)

    async def release_round(run_id: uuid.UUID, form: str) -> list[dict[str, Any]]:
        return entries(m[:EMERGENCY], current_proposal_message(run_id, RELEASE_KIND))

    with SlackStub() as slack:
        slack_block = f"{rolled_forward['names']['cluster_block']}-slack"
        await SlackChannel(
            bot_token=SecretStr(slack.token), channel="#ops", api_base_url=slack.base_url
        ).asave(slack_block, overwrite=True)
        state, forms = await drive(
            {**rolled_forward["params"], "slack_block": slack_block},
            [rollback_round, release_round],
        )
        assert state.is_completed(), state.message
        result = await state.aresult()
        slack_messages = list(slack.messages)

    # Restored: the archived hash, verified and recorded; executed by upgrade_manager.
    assert result["backend"] == "onchain"
    assert result["restored_hash"] == result["archived_hash"] == v1_hash == programdata_hash(chain)
    assert result["old_hash"] == v2_hash
    # Exactly one execute landed; every transaction of the run is journalled as landed.
    landed = landed_since(chain.server.localnet, mark)
    executes = um_instructions(landed, "execute_upgrade")
    assert executes == {result["onchain_proposal"]: 1}
    assert_journal_holds(records_db, landed)
    assert_landed_as_the_mode_lands(chain.server.localnet, landed)
    assert (result["emergency_threshold"], result["emergency_timelock_seconds"]) == (EMERGENCY, 1)
    assert sorted(result["approvals"]) == sorted(str(k.pubkey()) for k in m[1:5])
    proposal = rollback_row(records_db)
    assert proposal.status == "executed" and proposal.backend == "onchain"
    assert (proposal.threshold, proposal.timelock_seconds) == (EMERGENCY, 1)
    assert proposal.governance == str(chain.governance)
    assert result["onchain_proposal"] == proposal.onchain_address
    on_chain = onchain(chain, proposal)
    assert on_chain.kind == ProposalKind.EMERGENCY_UPGRADE
    assert on_chain.status == ProposalStatus.EXECUTED
    assert on_chain.buffer_hash.hex() == v1_hash
    gov = Governance.decode(account(chain, chain.governance))  # type: ignore[arg-type]
    assert sorted(str(k) for k in on_chain.approved_by(gov)) == sorted(result["approvals"])
    assert on_chain.closed_at - on_chain.approved_at >= gov.emergency_timelock == 1
    # No key but the governance's PDA ever held the program.
    assert upgrade_authority(chain) == pda
    execution = proposals.get_execution(records_db, proposal.id)
    assert execution is not None and execution.new_hash == v1_hash
    [verified] = audit.audit_events(records_db, action="rollback.verified")
    assert verified.details["archived_sha256"] == verified.details["restored_sha256"] == v1_hash
    assert verified.details["backend"] == "onchain"
    # `runbooks sign --proposal` does not guess the kind's line: it names the on-chain way.
    with pytest.raises(InputError, match=f"--onchain-proposal {proposal.onchain_address}"):
        signing_subject(proposal)
    # The refused upgrade-shaped sign-off is recorded with its reason; four were relayed.
    history = proposals.approvals(records_db, proposal.id)
    assert [a.accepted for a in history] == [False, True, True, True, True]
    # The form and Slack say it is an emergency rollback, under which rules.
    assert "# Sign off emergency rollback proposal 1" in forms[0]
    assert f"Approvals: 0 of {EMERGENCY} needed" in forms[0]
    assert "emergency policy: 4 of 5 members, timelock 1 s" in forms[0]
    assert f"runbooks sign --onchain-proposal {proposal.onchain_address}" in forms[0]
    [opened] = [msg for msg in slack_messages if "Rollback proposal 1" in msg["text"]]
    assert f"needs {EMERGENCY} of 5 sign-offs" in opened["text"]
    shown = json.dumps(opened["blocks"])
    assert "EMERGENCY ROLLBACK" in shown and "emergency policy: 4 of 5 members" in shown
    assert "kind: emergency-upgrade" in shown
    # Kill switch: engaged for the rollback, released after its own sign-off.
    switch = kill_switch_records.get_kill_switch(records_db, "localnet", program_id)
    assert switch is not None and not switch.engaged
    assert not paused(chain, rolled_forward["config"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("decision", ["reject", "cancel"])
async def test_a_rejected_or_cancelled_emergency_proposal_ends_the_run_as_an_upgrade_does(
    chain: DemoChain, rolled_forward: dict[str, Any], records_db: Engine, decision: str
) -> None:
    m = chain.members
    v2_hash = loader.verifiable_hash(chain.binaries["v2"])

    async def answer(run_id: uuid.UUID, form: str) -> list[dict[str, Any]]:
        proposal = rollback_row(records_db)
        assert proposal.onchain_address is not None
        async with AsyncClient(chain.url) as client:
            line, _, _ = await onchain_approval_line(
                client,
                Pubkey.from_string(proposal.onchain_address),
                decision,  # type: ignore[arg-type]
            )
        # Two rejections leave 3 members, short of the emergency 4: rejected.
        return entries(m[:2] if decision == "reject" else m[:1], line, decision)

    state, _ = await drive(rolled_forward["params"], [answer])
    proposal = rollback_row(records_db)
    if decision == "reject":
        assert state.is_failed()
        with pytest.raises(ProposalClosed, match="kill switch stays engaged"):
            await state.aresult()
        assert onchain(chain, proposal).status == ProposalStatus.REJECTED
        assert proposal.status == "rejected"
    else:
        assert state.is_cancelled(), state
        assert "kill switch stays engaged" in (state.message or "")
        assert onchain(chain, proposal).status == ProposalStatus.CANCELLED
        assert proposal.status == "cancelled"
    # Nothing executed; the switch stays on (the emergency is not over).
    assert programdata_hash(chain) == v2_hash
    assert proposals.get_execution(records_db, proposal.id) is None
    program_id = str(chain.program_id)
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id)
    assert paused(chain, rolled_forward["config"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_bad_input_is_refused_before_any_chain_write(
    chain: DemoChain, rolled_forward: dict[str, Any], records_db: Engine
) -> None:
    program_id = str(chain.program_id)
    v1_hash = loader.verifiable_hash(chain.binaries["v1"])
    payer = chain.authority.pubkey()
    balance = lamports(chain, payer)
    params = rolled_forward["params"]

    with pytest.raises(RecordsError, match="no archived binary"):
        await emergency_rollback(**params, to_sha256="ab" * 32)

    # An archive whose stored bytes no longer hash to its hash (a bad restore, an edit).
    with session_scope(records_db) as session:
        session.execute(
            update(ProgramArchive)
            .where(ProgramArchive.sha256 == v1_hash)
            .values(data=chain.binaries["v1"][:-1] + b"\x01")
        )
    with pytest.raises(HashMismatch, match="no longer match"):
        await emergency_rollback(**params, to_sha256=v1_hash)
    with pytest.raises(HashMismatch, match="no longer match"):
        await emergency_rollback(**params)  # the newest archive, chosen: the same one

    # A block whose emergency rules differ from the governance's would tell members wrong.
    block = await MultisigPolicy.aload(params["policy_block"])
    block.emergency_threshold, block.emergency_timelock_seconds = 2, 0
    await block.asave(params["policy_block"], overwrite=True)
    differs = r"emergency threshold 2 but governance .* requires 4"
    with pytest.raises(PolicyViolation, match=differs):
        await emergency_rollback(**params)

    # Nothing written: no fee paid, no on-chain proposal, no record, no switch, no pause.
    assert lamports(chain, payer) == balance
    gov = Governance.decode(account(chain, chain.governance))  # type: ignore[arg-type]
    assert gov.proposal_count == 0
    with session_scope(records_db) as session:
        assert session.scalar(select(func.count()).select_from(ProposalRow)) == 0
    assert kill_switch_records.get_kill_switch(records_db, "localnet", program_id) is None
    assert not paused(chain, rolled_forward["config"])

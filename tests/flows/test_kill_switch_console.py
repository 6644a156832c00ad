"""The kill switch in `make up`'s console: the same setup (onchain governance policy,
demo_vault's pause block, prefect.yaml's kill-switch parameters) on a real Prefect API and
a real localnet. Engaging pauses the program itself; members sign the release's own line
through the Resume API; the program serves again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from pydantic import SecretStr
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select
from vault_users import add_vault, deposit

from blocks import MultisigPolicy, SlackChannel
from core import approval
from core.approval import ApprovalSubject
from core.errors import InputError
from domain.kill_switch import KillSwitchRelease
from flows._signoff import signing_subject
from flows.kill_switch import kill_switch
from programs import loader
from runbooks import cli
from runbooks.console import pause_description, sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run
from runbooks.up import PAUSE_BLOCK, PREFECT_YAML, prepare_console
from store.db import session_scope
from store.models import AuditEvent, Proposal
from store.records import kill_switch as kill_switch_records
from store.records import proposals
from store.records.kill_switch import RELEASE_KIND
from store.records.proposals import ProposalRecord
from tests.stand_ins.slack_stub import SlackStub


def deployment_parameters(name: str) -> dict[str, Any]:
    """The parameters prefect.yaml gives a deployment (what a Quick run in the UI sends)."""
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    [entry] = [d for d in spec["deployments"] if d["name"] == name]
    return dict(entry["parameters"])


def release_proposal(engine: Engine, run_id: uuid.UUID) -> ProposalRecord:
    with session_scope(engine) as session:
        proposal_id = session.scalar(
            select(Proposal.id).where(
                Proposal.flow_run_id == str(run_id), Proposal.kind == RELEASE_KIND
            )
        )
    proposal = proposals.get_proposal(engine, proposal_id) if proposal_id else None
    assert proposal is not None, f"run {run_id} paused without a release proposal"
    return proposal


def cli_signature(proposal_id: int, keypair_file: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`runbooks sign --proposal N --keypair FILE`, as a member types it."""
    capsys.readouterr()
    assert cli.main(["sign", "--proposal", str(proposal_id), "--keypair", str(keypair_file)]) == 0
    lines = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines() if ":" in line)
    return lines["signature"].strip()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_console_kill_switch_pauses_the_program_and_releases_after_signoffs(
    prefect_api: None,
    chain: DemoChain,
    records_db: Engine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = await prepare_console(chain, tmp_path / "members")
    params = deployment_parameters("kill-switch")
    assert params["program_pause_block"] == PAUSE_BLOCK  # the deployment pauses by default
    policy = await MultisigPolicy.aload(params["policy_block"])
    assert policy.backend == "onchain" and policy.threshold == 3
    program_id = str(chain.program_id)
    config = Pubkey.from_string(scenario["pause_config"])
    owner, vault_key = add_vault(chain, config)
    assert deposit(chain, vault_key, owner, config).err is None

    engaged = await kill_switch(
        action="engage",
        program_id=program_id,
        reason="exploit suspected",
        actor="on-call",
        **params,
    )
    assert engaged["engaged"] is True and engaged["program_pause"] == PAUSE_BLOCK
    # The program's own pause: users' deposits are refused on chain (VaultError.Paused).
    assert "Custom(6000)" in str(deposit(chain, vault_key, owner, config).err)

    tag = f"test-{uuid.uuid4().hex[:12]}"
    with tags(tag):
        flow = asyncio.ensure_future(
            kill_switch(
                action="release",
                program_id=program_id,
                reason="patched and reviewed",
                actor="on-call",
                **params,
            )
        )
    run_id = await find_run(tag)
    async with get_client() as client:
        run = await wait_for_pause(client, run_id, timeout_seconds=120)
        proposal = release_proposal(records_db, run_id)
        line = signing_subject(proposal).message("approve")
        v1_hash = loader.verifiable_hash(chain.binaries["v1"])
        genesis = str(chain.server.localnet.genesis_hash)
        assert proposal.genesis_hash == genesis
        assert line == (
            f"solana-runbooks v2; action: approve; cluster: {genesis}; kill-switch: release; "
            f"program: {program_id}; proposal: {proposal.id}; sha256: {v1_hash}"
        )
        # The form says what is signed and how.
        assert run.state is not None
        form = await pause_description(client, run_id, run.state.state_details.pause_key or "")
        assert f"You are signing the release of the kill switch of `{program_id}`" in form
        assert f'runbooks sign --keypair ~/.config/solana/id.json --message "{line}"' in form
        assert f'solana sign-offchain-message -k ~/.config/solana/id.json "{line}"' in form

        m1, m2, m3 = chain.members[:3]
        upgrade_line = ApprovalSubject(
            governance=str(chain.governance),
            proposal="0",
            program=program_id,
            buffer=scenario["buffer"],
            sha256=loader.verifiable_hash(chain.binaries["v2"]),
            cluster=proposal.genesis_hash or "",
        ).message("approve")
        other_line = KillSwitchRelease(
            proposal.genesis_hash or "", program_id, str(proposal.id + 1), v1_hash
        ).message("approve")
        answers = [
            (m1, str(approval.sign(m1, upgrade_line))),  # refused: the upgrade's line
            (m2, str(approval.sign(m2, other_line))),  # refused: another proposal's line
            (m1, cli_signature(proposal.id, tmp_path / "members" / "member-1.json", capsys)),
            (m2, str(approval.sign(m2, line))),
            (m3, str(approval.sign(m3, line))),
        ]
        key = None
        for member, signature in answers:
            key = await sign_off(
                client,
                run_id,
                {"member": str(member.pubkey()), "signature": signature},
                after_key=key,
            )
    released = await asyncio.wait_for(flow, timeout=120)

    assert released["engaged"] is False and released["release_proposal_id"] == proposal.id
    # The program serves again.
    assert deposit(chain, vault_key, owner, config).err is None
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id) == []
    attempts = proposals.approvals(records_db, proposal.id)
    refused = [a for a in attempts if not a.accepted]
    assert [a.member for a in refused] == [str(m1.pubkey()), str(m2.pubkey())]
    assert all("signature is not" in (a.reason or "") for a in refused)
    assert sorted(a.member for a in attempts if a.accepted) == sorted(
        str(m.pubkey()) for m in (m1, m2, m3)
    )
    final = proposals.get_proposal(records_db, proposal.id)
    assert final is not None and final.status == "executed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_releasing_a_switch_that_is_not_engaged_says_so_and_writes_nothing(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    program_id = str(chain.program_id)
    with pytest.raises(InputError, match=f"kill switch of {program_id} on localnet is not engaged"):
        await kill_switch(
            action="release",
            program_id=program_id,
            reason="all clear",
            actor="on-call",
            **block_names_for_switch(block_names),
        )
    with session_scope(records_db) as session:
        assert session.scalar(select(func.count()).select_from(Proposal)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_pause_block_of_another_program_is_refused_before_anything_is_written(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    from runbooks.demo_migration import create_config, save_pause_block

    config = await create_config(chain)
    pause = await save_pause_block(chain, config, f"{block_names['cluster_block']}-pause")
    other = str(Pubkey.new_unique())
    with pytest.raises(InputError, match=f"pauses {chain.program_id}, not {other}"):
        await kill_switch(
            action="engage",
            program_id=other,
            reason="r",
            actor="on-call",
            program_pause_block=pause,
            **block_names_for_switch(block_names),
        )
    assert kill_switch_records.get_kill_switch(records_db, "localnet", other) is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_engaging_without_a_pause_block_says_the_program_still_serves_users(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    program_id = str(chain.program_id)
    with SlackStub() as slack:
        slack_block = f"{block_names['cluster_block']}-slack"
        await SlackChannel(
            bot_token=SecretStr(slack.token), channel="#ops", api_base_url=slack.base_url
        ).asave(slack_block, overwrite=True)
        state = await kill_switch(
            action="engage",
            program_id=program_id,
            reason="exploit suspected",
            actor="on-call",
            slack_block=slack_block,
            return_state=True,
            **block_names_for_switch(block_names),
        )
        assert state.is_completed()
        [message] = slack.messages
    assert "KILL SWITCH ENGAGED" in message["text"]
    assert f"{program_id} is STILL SERVING USERS" in message["text"]
    assert "Blocks > + > Program Pause" in message["text"]
    # The run log says it too, as a warning.
    run_id = state.state_details.flow_run_id
    async with get_client() as client:
        for _ in range(40):
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            warnings = [log.message for log in logs if "STILL SERVING USERS" in log.message]
            if warnings:
                break
            await asyncio.sleep(0.25)
    assert warnings and all(log.level == 30 for log in logs if log.message in warnings)
    assert "program_pause_block" in warnings[0]


def block_names_for_switch(names: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in names.items() if k != "authority_block"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_switch_of_every_program_releases_on_its_own_line(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    from runbooks.demo_migration import current_proposal_message, run_signed_flow

    params = {"program_id": "*", "actor": "on-call", **block_names_for_switch(block_names)}
    await kill_switch(action="engage", reason="cluster-wide incident", **params)
    lines: list[str] = []

    def line(run_id: uuid.UUID, _: int) -> str:
        lines.append(current_proposal_message(run_id, RELEASE_KIND))
        return lines[-1]

    released = await run_signed_flow(
        lambda: kill_switch(action="release", reason="all clear", **params),
        [chain.members[:3]],
        line,
    )
    assert released["engaged"] is False
    assert lines[0].endswith(
        f"program: *; proposal: {released['release_proposal_id']}; sha256: none"
    )
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", "*") == []

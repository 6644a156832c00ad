"""The upgrade runbook with the onchain backend: upgrade_manager enforces the sign-off.

A real Prefect API, a real localnet with upgrade_manager deployed through the loader, a
3-of-5 governance whose PDA is demo_vault's upgrade authority, and a records database.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from cluster_like import CLUSTER_LIKE, on
from flow_driver import run_upgrade_flow
from landed import (
    assert_journal_holds,
    assert_landed_as_the_mode_lands,
    instructions_in,
    landed_signatures,
    landed_since,
)
from prefect.client.orchestration import get_client
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from sqlalchemy import Engine

from blocks import MultisigPolicy, SlackChannel, SolanaCluster
from core import approval, errors
from core.keys import keypair_to_json
from domain import messages
from domain.policy import Member
from domain.signoff import Verdict
from flows._signoff import approval_subject
from programs import loader
from programs.anchor import instruction_data
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Governance, Proposal, ProposalStatus
from programs.upgrade_manager.sandbox import DEVNET_GENESIS
from runbooks.cli import main as runbooks_cli
from runbooks.demo import (
    DemoChain,
    hand_buffer_to_governance,
    save_blocks,
    setup_governance,
    write_buffer,
)
from store.records import audit, proposals, slack_threads
from tasks import governance
from tests.stand_ins.slack_stub import SlackStub

TIMELOCK = 2


@pytest.fixture
async def gov_blocks(prefect_api: None, chain: DemoChain) -> dict[str, str]:
    await setup_governance(chain, timelock_seconds=TIMELOCK)
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    return await save_blocks(chain, prefix=prefix, timelock_seconds=TIMELOCK, backend="onchain")


@pytest.fixture
async def pda_buffer(chain: DemoChain, gov_blocks: dict[str, str]) -> str:
    buffer = await write_buffer(chain, chain.binaries["v2"])
    await hand_buffer_to_governance(chain, buffer)
    return str(buffer)


def account(chain: DemoChain, address: Pubkey) -> bytes:
    found = chain.server.localnet.get_account(address)
    assert found is not None, address
    return bytes(found.data)


def onchain_proposal(chain: DemoChain, proposal: proposals.ProposalRecord) -> Proposal:
    assert proposal.onchain_address is not None
    return Proposal.decode(account(chain, Pubkey.from_string(proposal.onchain_address)))


def programdata_hash(chain: DemoChain) -> str:
    return loader.programdata_hash(account(chain, loader.programdata_address(chain.program_id)))


def sign(member: Keypair, proposal: proposals.ProposalRecord, action: str = "approve") -> dict:
    message = approval_subject(proposal).message(action)  # type: ignore[arg-type]
    return {
        "member": str(member.pubkey()),
        "decision": action,
        "signature": str(approval.sign(member, message)),
    }


@pytest.mark.parametrize(
    ("db_url", "behaviour"),
    [on("sqlite", None), on("postgresql", None), on("sqlite", CLUSTER_LIKE)],
    indirect=["db_url"],
)
async def test_onchain_upgrade_end_to_end(
    chain: DemoChain, gov_blocks, records_db: Engine, pda_buffer: str, tmp_path, capsys
) -> None:
    m = chain.members
    mark = landed_signatures(chain.server.localnet)
    v2_hash = loader.verifiable_hash(chain.binaries["v2"])
    outsider = Keypair()

    def cli_signature(member: Keypair, proposal_id: int) -> str:
        keyfile = tmp_path / f"{member.pubkey()}.json"
        keyfile.write_text(keypair_to_json(member))
        capsys.readouterr()
        assert (
            runbooks_cli(["sign", "--proposal", str(proposal_id), "--keypair", str(keyfile)]) == 0
        )
        out = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
        return out["signature"].strip()

    def answers(proposal: proposals.ProposalRecord) -> list[dict]:
        # The signed text names the governance account and the on-chain proposal number.
        message = approval_subject(proposal).message("approve")
        assert f"governance: {chain.governance}; proposal: 1; " in message
        return [
            {"member": str(m[0].pubkey()), "signature": cli_signature(m[0], proposal.id)},
            sign(outsider, proposal),  # refused by the flow before anything is sent
            sign(m[1], proposal),
            sign(m[1], proposal),  # a duplicate: the chain's bitmap says m[1] signed
            sign(m[2], proposal),
        ]

    outcome = await run_upgrade_flow(
        chain, gov_blocks, pda_buffer, answers, expected_sha256=v2_hash
    )
    assert outcome.state.is_completed(), outcome.state.message
    result = await outcome.state.aresult()
    assert result["backend"] == "onchain"
    assert result["approvals"] == [str(k.pubkey()) for k in m[:3]]
    assert programdata_hash(chain) == v2_hash
    # Exactly one execute landed (the proposal, the relayed votes and the execute are
    # all the run's), and every transaction of the run is journalled as landed.
    landed = landed_since(chain.server.localnet, mark)
    executes = instructions_in(landed, um.PROGRAM_ID, instruction_data("execute_upgrade"), 1)
    assert executes == {result["onchain_proposal"]: 1}
    assert_journal_holds(records_db, landed)
    assert_landed_as_the_mode_lands(chain.server.localnet, landed)

    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "executed"
    assert proposal.governance == str(chain.governance)
    assert result["onchain_proposal"] == proposal.onchain_address
    on_chain = onchain_proposal(chain, proposal)
    assert on_chain.status == ProposalStatus.EXECUTED and on_chain.index == 1
    gov = Governance.decode(account(chain, chain.governance))
    assert [str(k) for k in on_chain.approved_by(gov)] == result["approvals"]
    # The records mirror the chain: the timelock started at the chain's approved_at.
    assert proposal.threshold_met_at == datetime.fromtimestamp(on_chain.approved_at, UTC)
    assert on_chain.closed_at - on_chain.approved_at >= TIMELOCK
    history = proposals.approvals(records_db, proposal.id)
    assert [a.accepted for a in history] == [True, False, True, False, True]
    assert "not a member" in (history[1].reason or "")
    assert "already signed off" in (history[3].reason or "")
    actions = {
        e.action for e in audit.audit_events(records_db, proposals.proposal_subject(proposal.id))
    }
    assert {governance.NUMBER_ACTION, "proposal.onchain_address"} <= actions
    # The upgrade authority stays the governance's PDA.
    state = loader.decode_state(account(chain, loader.programdata_address(chain.program_id)))
    assert isinstance(state, loader.ProgramData)
    assert state.authority == um.authority_address(chain.governance)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_cancel_on_chain_stops_the_flow(
    chain: DemoChain, gov_blocks, records_db: Engine, pda_buffer: str
) -> None:
    """A member cancels on chain directly (cancel_signed, no SOL of their own); the next
    sign-off the flow accepts is refused by the program, and the flow ends cancelled."""
    m = chain.members
    v1_hash = programdata_hash(chain)

    def answers(proposal: proposals.ProposalRecord) -> list[dict]:
        assert chain.governance is not None and proposal.onchain_address is not None
        cancel = um.vote_signed(
            chain.governance, Pubkey.from_string(proposal.onchain_address), m[4].pubkey(), "cancel"
        )
        net = chain.server.localnet
        payer = chain.authority
        tx = Transaction.new_signed_with_payer(
            [cancel], payer.pubkey(), [payer, m[4]], net.latest_blockhash()[0]
        )
        assert net.send_transaction(tx).ok
        return [sign(m[0], proposal)]

    outcome = await run_upgrade_flow(chain, gov_blocks, pda_buffer, answers)
    assert outcome.state.is_cancelled(), outcome.state
    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "cancelled"
    [refused] = proposals.approvals(records_db, proposal.id)
    assert not refused.accepted
    assert "cancelled on chain" in (refused.reason or "")
    assert onchain_proposal(chain, proposal).status == ProposalStatus.CANCELLED
    assert programdata_hash(chain) == v1_hash


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_block_that_disagrees_with_the_chain_stops_the_run(
    chain: DemoChain, gov_blocks, records_db: Engine, pda_buffer: str
) -> None:
    policy = await MultisigPolicy.aload(gov_blocks["policy_block"])
    policy.threshold = 4
    await policy.asave(gov_blocks["policy_block"], overwrite=True)
    outcome = await run_upgrade_flow(chain, gov_blocks, pda_buffer, None)
    assert outcome.state.is_failed()
    with pytest.raises(errors.PolicyViolation, match=r"threshold 4 but governance .* requires 3"):
        await outcome.state.aresult()
    assert outcome.proposal is None
    gov = Governance.decode(account(chain, chain.governance))
    assert gov.proposal_count == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_governance_of_another_cluster_stops_the_run(
    chain: DemoChain, gov_blocks, records_db: Engine, pda_buffer: str
) -> None:
    """The multisig block names a governance created for devnet while the cluster block's
    RPC answers with this cluster's genesis: nothing is proposed or recorded."""
    here = Governance.decode(account(chain, chain.governance))
    create_key, payer = Keypair(), chain.authority
    create = um.create_governance(create_key.pubkey(), payer.pubkey(), here.config, DEVNET_GENESIS)
    net = chain.server.localnet
    tx = Transaction.new_signed_with_payer(
        [create], payer.pubkey(), [payer, create_key], net.latest_blockhash()[0]
    )
    assert net.send_transaction(tx).ok
    devnet_gov = um.governance_address(create_key.pubkey())
    policy = await MultisigPolicy.aload(gov_blocks["policy_block"])
    policy.governance = str(devnet_gov)
    await policy.asave(gov_blocks["policy_block"], overwrite=True)

    outcome = await run_upgrade_flow(chain, gov_blocks, pda_buffer, None)
    assert outcome.state.is_failed()
    with pytest.raises(errors.ChainError) as refused:
        await outcome.state.aresult()
    message = str(refused.value)
    assert here.cluster in message and DEVNET_GENESIS in message and "RPC URL" in message
    assert outcome.proposal is None
    assert Governance.decode(account(chain, devnet_gov)).proposal_count == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_retried_writes_repeat_nothing(
    chain: DemoChain, gov_blocks, records_db: Engine, pda_buffer: str
) -> None:
    """Each write task run twice (a retry after a lost reply): one proposal, one vote."""
    cluster = await SolanaCluster.aload(gov_blocks["cluster_block"])
    block = await MultisigPolicy.aload(gov_blocks["policy_block"])
    onchain_gov = await governance.load_governance(
        cluster,
        block.policy(),
        block.governance,
        block.governance_program,
        gov_blocks["fee_payer_block"],
    )
    proposal = proposals.record_proposal(
        records_db,
        key=f"manual-{uuid.uuid4()}",
        kind="upgrade",
        cluster="localnet",
        backend="onchain",
        governance=onchain_gov.governance,
        program_id=str(chain.program_id),
        buffer=pda_buffer,
        buffer_hash=loader.verifiable_hash(chain.binaries["v2"]),
        description="d",
        proposer="p",
        members=[m.pubkey for m in block.members],
        threshold=3,
        timelock_seconds=TIMELOCK,
        genesis_hash=await governance.cluster_genesis(cluster, onchain_gov),
    )
    with pytest.raises(errors.ChainError, match="no on-chain proposal yet"):
        approval_subject(proposal)
    first = await governance.create_proposal(cluster, onchain_gov, proposal)
    again = await governance.create_proposal(cluster, onchain_gov, first)
    assert first.onchain_address == again.onchain_address is not None
    assert Governance.decode(account(chain, chain.governance)).proposal_count == 1

    member = chain.members[0]
    entry = sign(member, first)
    verdict = Verdict(member=entry["member"], decision="approve", accepted=True)
    for _ in range(2):
        assert (
            await governance.relay_signoff(cluster, onchain_gov, first, verdict, entry["signature"])
            == verdict
        )
    assert onchain_proposal(chain, first).approvals == 1
    decided, closed = await governance.onchain_signoffs(cluster, onchain_gov, first)
    assert (decided, closed) == ({entry["member"]: "approve"}, None)

    # A signature over another action fails Ed25519SigVerify (the relay sends the approve
    # message); the chain's refusal is what the flow records.
    other = chain.members[1]
    wrong = sign(other, first, "reject")
    refused = await governance.relay_signoff(
        cluster,
        onchain_gov,
        first,
        Verdict(str(other.pubkey()), "approve", True),
        wrong["signature"],
    )
    assert not refused.accepted and "does not verify" in (refused.reason or "")
    with pytest.raises(errors.ApprovalError, match="not approved on chain"):
        await governance.execute_upgrade(cluster, onchain_gov, first)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_remote_members_sign_and_slack_keeps_one_thread(
    chain: DemoChain,
    gov_blocks,
    records_db: Engine,
    pda_buffer: str,
    tmp_path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two members sign with no records database (one from the on-chain proposal account,
    one from the exact line); the program accepts both. Slack gets one thread: the first
    message names and @mentions who must sign and is updated as sign-offs arrive; every
    later event is a reply in it."""
    m = chain.members
    names = ["Alice", "Bob", "Carol", "Dave", "Erin"]
    block = await MultisigPolicy.aload(gov_blocks["policy_block"])
    block.members = [
        Member(name=n, pubkey=str(k.pubkey()), slack_user_id=f"U0{n.upper()}")
        for n, k in zip(names, m, strict=True)
    ]
    await block.asave(gov_blocks["policy_block"], overwrite=True)

    def cli(*argv: str) -> tuple[int, dict[str, str], str]:
        capsys.readouterr()
        # No records database reachable: a remote member's machine.
        with monkeypatch.context() as env:
            env.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/records.db")
            # The command runs its own event loop, as in a member's shell: not on this one.
            with ThreadPoolExecutor(1) as pool:
                rc = pool.submit(runbooks_cli, list(argv)).result()
        out, err = capsys.readouterr()
        printed = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return rc, {k: v.strip() for k, v in printed.items()}, err

    def keyfile(member: Keypair) -> str:
        path = tmp_path / f"{member.pubkey()}.json"
        path.write_text(keypair_to_json(member))
        return str(path)

    def answers(proposal: proposals.ProposalRecord) -> list[dict]:
        assert proposal.onchain_address is not None
        line = approval_subject(proposal).message("approve")
        # (a) From the on-chain account: the exact line, rebuilt from the chain.
        rc, a, err = cli(
            "sign", "--onchain-proposal", proposal.onchain_address, "--url", chain.url,
            "--keypair", keyfile(m[0]),
        )  # fmt: skip
        assert rc == 0, err
        assert a["message"] == line and a["pubkey"] == str(m[0].pubkey())
        assert a["proposal"].startswith("1 (upgrade") and a["approvals"] == "0 of 3"
        # A non-member key is told so, and nothing is printed to paste.
        rc, _, err = cli(
            "sign", "--onchain-proposal", proposal.onchain_address, "--url", chain.url,
            "--keypair", keyfile(Keypair()),
        )  # fmt: skip
        assert rc == 2 and "is not a member of governance" in err
        # (b) From the line in the form; a truncated paste is named, not signed.
        rc, _, err = cli("sign", "--message", line[:-10], "--keypair", keyfile(m[1]))
        assert rc == 2 and "sha256" in err and "cut off" in err
        rc, b, err = cli("sign", "--message", line, "--keypair", keyfile(m[1]))
        assert rc == 0 and b["message"] == line, err
        return [
            {"member": a["pubkey"], "signature": a["signature"]},
            {"member": b["pubkey"], "signature": b["signature"]},
            sign(m[2], proposal),
        ]

    with SlackStub() as slack:
        await SlackChannel(
            bot_token=slack.token, channel="#upgrades", api_base_url=slack.base_url
        ).asave(f"{gov_blocks['policy_block']}-slack", overwrite=True)
        outcome = await run_upgrade_flow(
            chain, gov_blocks, pda_buffer, answers,
            slack_block=f"{gov_blocks['policy_block']}-slack",
        )  # fmt: skip
    assert outcome.state.is_completed(), outcome.state.message
    result = await outcome.state.aresult()
    assert result["approvals"] == [str(k.pubkey()) for k in m[:3]]  # accepted on chain
    proposal = outcome.proposal
    assert proposal is not None

    # One thread: one top-level message, everything else a reply to it.
    [head] = [msg for msg in slack.messages if "thread_ts" not in msg]
    replies = slack.thread(head["ts"])
    assert len(replies) == len(slack.messages) - 1 >= 5  # 3 sign-offs, timelock, executed
    assert slack_threads.get_slack_thread(records_db, proposal.id).ts == head["ts"]
    first = slack.updates[0]
    assert first["ts"] == head["ts"] and first["channel"] == SlackStub.CHANNEL_ID
    # The proposal number is the signed one everywhere (on-chain index 1).
    assert "Upgrade proposal 1" in head["text"]
    # The first reply mentions who has not signed yet, by Slack id, not who has.
    assert "accepted (1/3)" in replies[0]["text"]
    mentioned = str(replies[0]["blocks"])
    assert "<@U0BOB> Bob" in mentioned and "<@U0ALICE>" not in mentioned
    # The first message, as updated last: 3 of 3, who signed, by name.
    status = next(b for b in head["blocks"] if b.get("block_id") == messages.STATUS_BLOCK_ID)
    assert "*Sign-offs: 3 of 3* — threshold met" in status["text"]["text"]
    assert "Alice (" in status["text"]["text"] and "Carol (" in status["text"]["text"]
    assert len(slack.updates) == 3
    assert "upgraded" in replies[-1]["text"]
    # The run's sign-offs report names each member beside the key.
    async with get_client() as client:
        found = await client._client.post(
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [str(outcome.run_id)]},
                    "key": {"any_": [f"upgrade-approvals-{proposal.id}"]},
                }
            },
        )
    [table] = found.json()
    rows = json.loads(table["data"])
    assert [(r["name"], r["member"]) for r in rows if r["accepted"] == "yes"] == [
        (n, str(k.pubkey())) for n, k in zip(names[:3], m[:3], strict=True)
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_adopt_task_hands_a_program_to_the_governance_once(
    prefect_api: None, chain: DemoChain, records_db: Engine
) -> None:
    """The key-rotation runbook's checked adopt: demo_vault's authority (the keypair)
    hands it to the governance; a retry sends nothing; a mistyped governance is refused
    before anything is sent."""
    governance_key = await setup_governance(chain, timelock_seconds=TIMELOCK, adopt=False)
    names = await save_blocks(
        chain, prefix=f"t-{uuid.uuid4().hex[:10]}", timelock_seconds=TIMELOCK, backend="onchain"
    )
    cluster = await SolanaCluster.aload(names["cluster_block"])
    block = await MultisigPolicy.aload(names["policy_block"])
    onchain_gov = await governance.load_governance(
        cluster,
        block.policy(),
        block.governance,
        block.governance_program,
        names["fee_payer_block"],
    )
    programdata = loader.programdata_address(chain.program_id)
    state = loader.decode_state(account(chain, programdata))
    assert isinstance(state, loader.ProgramData) and state.authority == chain.authority.pubkey()

    typo = governance.OnchainGovernance(
        onchain_gov.program_id, str(Keypair().pubkey()), onchain_gov.authority,
        names["fee_payer_block"],
    )  # fmt: skip
    before = account(chain, programdata)
    with pytest.raises(errors.AccountNotFound, match="does not exist"):
        await governance.adopt_program(
            cluster, typo, str(chain.program_id), names["authority_block"]
        )
    assert account(chain, programdata) == before

    signature = await governance.adopt_program(
        cluster, onchain_gov, str(chain.program_id), names["authority_block"]
    )
    assert signature is not None
    state = loader.decode_state(account(chain, programdata))
    assert isinstance(state, loader.ProgramData)
    assert state.authority == um.authority_address(governance_key)
    again = await governance.adopt_program(
        cluster, onchain_gov, str(chain.program_id), names["authority_block"]
    )
    assert again is None

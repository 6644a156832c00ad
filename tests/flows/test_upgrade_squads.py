"""The upgrade runbook on a Squads v4 policy, on a localnet with demo_vault v1 whose upgrade
authority is the vault of a multisig serialized by the official SDK.

Here (no Squads binary): bad input is refused before anything is recorded or sent (the
runbook's key holding Vote, a buffer held by someone else, a hash mismatch), and a buffer
held by the runbook's key is handed to the vault. End to end (approved with ``runbooks
squads approve``, rejected, cancelled, the time lock) runs only with RUNBOOKS_SQUADS_SO.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from flow_driver import run_upgrade_flow
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.runtime import flow_run as prefect_flow_run
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from sqlalchemy import Engine, func, select

from blocks import MultisigPolicy, SlackChannel, SolanaCluster
from core import errors
from core.keys import keypair_to_json
from flows._squads import announce_squads
from programs import loader
from programs.squads import client as squads
from runbooks.cli import main as runbooks_cli
from runbooks.demo import DemoChain, write_buffer
from store.models import Base
from store.records.proposals import ProposalRecord
from tasks import records
from tasks import squads as squads_tasks
from tests.squads_localnet import (
    PlacedMultisig,
    place_multisig,
    place_vault_transaction,
    squads_binary,
)
from tests.stand_ins.slack_stub import SlackStub

VOTE_ALL = int(squads.ALL_PERMISSIONS)
RUNBOOK = int(squads.Permission.INITIATE | squads.Permission.EXECUTE)


def send(chain: DemoChain, *ixs: Any, signers: tuple[Keypair, ...] = ()) -> None:
    net = chain.server.localnet
    payer = chain.authority
    tx = Transaction.new_signed_with_payer(
        list(ixs), payer.pubkey(), [payer, *signers], net.latest_blockhash()[0]
    )
    assert net.send_transaction(tx).ok


def authority_of(chain: DemoChain, address: Pubkey) -> str | None:
    found = chain.server.localnet.get_account(address)
    assert found is not None
    return str(loader.decode_state(bytes(found.data)).authority)


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


async def squads_policy(
    chain: DemoChain, names: dict[str, str], runbook_permissions: int = RUNBOOK, time_lock: int = 0
) -> PlacedMultisig:
    """A multisig of three voters and the runbook's key (the fee payer), its vault made
    demo_vault's upgrade authority, and the policy block pointing at it."""
    net = chain.server.localnet
    voters = [(m, VOTE_ALL) for m in chain.members[:3]]
    placed = place_multisig(
        net, [*voters, (chain.authority, runbook_permissions)], time_lock=time_lock
    )
    placed.put()
    vault = squads.vault_pda(placed.address, 0)[0]
    programdata = loader.programdata_address(chain.program_id)
    send(chain, loader.set_authority(programdata, chain.authority.pubkey(), vault))
    policy = await MultisigPolicy.aload(names["policy_block"])
    policy.backend = "squads"
    policy.squads_multisig = str(placed.address)
    policy.squads_poll_seconds = 1
    await policy.asave(names["policy_block"], overwrite=True)
    return placed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_runbook_key_that_can_vote_is_refused_before_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names, runbook_permissions=VOTE_ALL)
    buffer = await write_buffer(chain, chain.binaries["v2"])
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    outcome = await run_upgrade_flow(chain, block_names, str(buffer), None)
    with pytest.raises(errors.PolicyViolation, match="has Vote permission: it must never"):
        await outcome.state.aresult()
    assert outcome.proposal is None and row_counts(records_db) == before
    assert chain.server.localnet.slot == slot  # nothing sent
    assert authority_of(chain, buffer) == str(chain.authority.pubkey())
    assert chain.server.localnet.get_account(squads.proposal_pda(placed.address, 1)[0]) is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_buffer_held_by_someone_else_is_refused_naming_the_command(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    await squads_policy(chain, block_names)
    other = Keypair()
    buffer = await write_buffer(chain, chain.binaries["v2"], authority=other)
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    outcome = await run_upgrade_flow(chain, block_names, str(buffer), None)
    with pytest.raises(errors.InputError) as refused:
        await outcome.state.aresult()
    assert f"solana program set-buffer-authority {buffer} --new-buffer-authority" in str(
        refused.value
    )
    assert outcome.proposal is None and row_counts(records_db) == before
    assert chain.server.localnet.slot == slot
    assert authority_of(chain, buffer) == str(other.pubkey())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_runbooks_buffer_is_handed_to_the_vault_once_its_hash_is_checked(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names)
    vault = str(squads.vault_pda(placed.address, 0)[0])
    cluster = await SolanaCluster.aload(block_names["cluster_block"])
    buffer = await write_buffer(chain, chain.binaries["v2"])
    fee_payer = block_names["fee_payer_block"]
    args = (cluster, str(chain.program_id), str(buffer), str(placed.address))

    with pytest.raises(errors.HashMismatch):
        await squads_tasks.hand_buffer_to_vault(*args, "0" * 64, fee_payer)
    assert authority_of(chain, buffer) == str(chain.authority.pubkey())

    await squads_tasks.hand_buffer_to_vault(*args, None, fee_payer)
    assert authority_of(chain, buffer) == vault
    slot = chain.server.localnet.slot
    await squads_tasks.hand_buffer_to_vault(*args, None, fee_payer)  # already: nothing sent
    assert chain.server.localnet.slot == slot


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_the_squads_program_the_run_gets_as_far_as_the_create(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    """Everything before the first Squads instruction runs here: the audit, the hand-over
    of the runbook's buffer to the vault, the proposal recorded with the multisig's own
    voters, threshold and time lock; the runtime then refuses the create (no program at
    the Squads id), and the run fails saying so."""
    placed = await squads_policy(chain, block_names, time_lock=60)
    vault = str(squads.vault_pda(placed.address, 0)[0])
    buffer = await write_buffer(chain, chain.binaries["v2"])
    outcome = await run_upgrade_flow(chain, block_names, str(buffer), None)
    with pytest.raises(errors.TransactionFailed, match="InvalidProgramForExecution"):
        await outcome.state.aresult()
    assert authority_of(chain, buffer) == vault
    proposal = outcome.proposal
    assert proposal is not None and proposal.backend == "squads"
    assert proposal.governance == str(placed.address)
    assert sorted(proposal.members) == sorted(str(m.pubkey()) for m in chain.members[:3])
    assert (proposal.threshold, proposal.timelock_seconds) == (2, 60)
    assert chain.server.localnet.get_account(squads.proposal_pda(placed.address, 1)[0]) is None


def programdata_hash(chain: DemoChain) -> str:
    found = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert found is not None
    return loader.programdata_hash(bytes(found.data))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_execution_refuses_a_proposal_not_approved_or_not_this_upgrade(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names)
    net = chain.server.localnet
    cluster = await SolanaCluster.aload(block_names["cluster_block"])
    fee_payer = block_names["fee_payer_block"]
    buffer = str(await write_buffer(chain, chain.binaries["v2"]))
    vault = squads.vault_pda(placed.address, 0)[0]
    spill = str(chain.authority.pubkey())
    proposal = ProposalRecord.model_construct(
        id=9, program_id=str(chain.program_id), buffer=buffer, buffer_hash="ab" * 32
    )
    ours = squads.compile_message(
        [squads_tasks.upgrade_instruction(str(chain.program_id), buffer, vault, spill)], vault
    )
    place_vault_transaction(net, placed.address, 1, chain.authority.pubkey(), ours)
    upgrade = squads_tasks._created(placed.address, 1, spill, "")
    placed.put_proposal(1, "Active", net.unix_timestamp())
    slot = net.slot
    with pytest.raises(errors.ChainError, match="is Active, not Approved: not executed"):
        await squads_tasks.send_squads_execution(cluster, proposal, upgrade, fee_payer)

    # Approved, but the stored message pays the buffer's lamports elsewhere: not ours.
    placed.put_proposal(1, "Approved", net.unix_timestamp())
    other = squads_tasks._created(placed.address, 1, str(Keypair().pubkey()), "")
    with pytest.raises(errors.ChainError, match="is not this runbook's upgrade"):
        await squads_tasks.send_squads_execution(cluster, proposal, other, fee_payer)
    assert net.slot == slot  # nothing sent

    # The program already holds the proposal's hash: nothing to send.
    done = ProposalRecord.model_construct(
        id=9, program_id=str(chain.program_id), buffer=buffer, buffer_hash=programdata_hash(chain)
    )
    assert await squads_tasks.send_squads_execution(cluster, done, upgrade, fee_payer) is None
    assert net.slot == slot


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_announcement_names_the_proposal_its_link_and_the_approve_command(
    prefect_api: None, records_db: Engine
) -> None:
    multisig = squads.multisig_pda(Keypair().pubkey())[0]
    proposal = records.record_proposal(
        key=f"squads-announce-{multisig}",
        kind="upgrade",
        cluster="localnet",
        backend="squads",
        governance=str(multisig),
        program_id=str(Keypair().pubkey()),
        buffer=str(Keypair().pubkey()),
        buffer_hash="ab" * 32,
        description="v2: fixes the rounding",
        proposer="alice",
        members=[str(Keypair().pubkey()) for _ in range(3)],
        threshold=2,
        timelock_seconds=3600,
    )
    created = squads_tasks._created(multisig, 4, str(Keypair().pubkey()), "")
    cluster = SolanaCluster(cluster="localnet", rpc_urls=["http://127.0.0.1:1"])
    link = f"https://app.squads.so/squads/{multisig}/transactions/4"
    command = (
        f"runbooks squads approve --multisig {multisig} --transaction-index 4 "
        "--keypair <your keypair file or usb://ledger> --url http://127.0.0.1:1"
    )
    with SlackStub() as slack:
        await SlackChannel(
            bot_token=slack.token, channel="#ops", api_base_url=slack.base_url
        ).asave("squads-announce-slack", overwrite=True)

        @flow(name="announce-squads-test")
        async def announce_twice() -> str:  # twice: a rerun posts nothing new
            for _ in range(2):
                await announce_squads(proposal, created, cluster, "squads-announce-slack")
            return str(prefect_flow_run.id)

        run_id = await announce_twice()
        [posted] = slack.messages  # once: the thread is recorded
    shown = str(posted["blocks"])
    assert link in shown and command in shown and created.proposal in shown
    assert "2 of 3 members with Vote permission" in shown
    async with get_client() as client:
        [artifact] = await client.read_artifacts(
            # This run's: other tests' records also number their first proposal #1.
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"squads-proposal-{proposal.id}"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(run_id)]),
            ),
            limit=1,
        )
    text = str(artifact.data)
    assert link in text and command in text and created.proposal in text
    assert "| Transaction index | 4 |" in text


# --- end to end: only with the real Squads program (RUNBOOKS_SQUADS_SO) -----------------


def keyfile(tmp_path: Path, kp: Keypair) -> str:
    path = tmp_path / f"{kp.pubkey()}.json"
    path.write_text(keypair_to_json(kp))
    return str(path)


async def vote(
    chain: DemoChain, placed: PlacedMultisig, index: int, member: Keypair, tmp_path: Path, *how: str
) -> None:
    argv = [
        "squads",
        "approve",
        "--url",
        chain.url,
        "--multisig",
        str(placed.address),
        "--transaction-index",
        str(index),
        "--keypair",
        keyfile(tmp_path, member),
        *how,
    ]
    assert await asyncio.to_thread(runbooks_cli, argv) == 0


async def proposal_of(chain: DemoChain, placed: PlacedMultisig, index: int) -> squads.Proposal:
    address = squads.proposal_pda(placed.address, index)[0]
    for _ in range(600):
        found = chain.server.localnet.get_account(address)
        if found is not None:
            return squads.decode_proposal(bytes(found.data))
        await asyncio.sleep(0.2)
    raise AssertionError(f"no proposal {index} was created")


async def start(chain: DemoChain, names: dict[str, str], buffer: Pubkey) -> asyncio.Task[Any]:
    return asyncio.create_task(run_upgrade_flow(chain, names, str(buffer), None))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("ending", ["approved", "rejected", "cancelled"])
async def test_end_to_end_with_the_real_squads_program(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    tmp_path: Path,
    ending: str,
) -> None:
    squads_binary()  # skips, saying how to get it, when absent
    for member in chain.members[:3]:
        chain.server.localnet.airdrop(member.pubkey(), 10**9)
    # Long enough in the cancel case for both cancels to land inside it.
    time_lock = {"approved": 3, "rejected": 0, "cancelled": 120}[ending]
    placed = await squads_policy(chain, block_names, time_lock=time_lock)
    v1 = programdata_hash(chain)
    buffer = await write_buffer(chain, chain.binaries["v2"])
    run = await start(chain, block_names, buffer)
    await proposal_of(chain, placed, 1)
    a, b = chain.members[:2]
    if ending == "rejected":
        await vote(chain, placed, 1, a, tmp_path, "--reject")
        await vote(chain, placed, 1, b, tmp_path, "--reject")
    else:
        await vote(chain, placed, 1, a, tmp_path)
        await vote(chain, placed, 1, b, tmp_path)
        if ending == "cancelled":  # within the time lock
            await vote(chain, placed, 1, a, tmp_path, "--cancel")
            await vote(chain, placed, 1, b, tmp_path, "--cancel")
    outcome = await asyncio.wait_for(run, timeout=180)
    now_hash = programdata_hash(chain)
    if ending == "approved":
        result = await outcome.state.aresult()
        assert result["new_hash"] == now_hash != v1
        assert (await proposal_of(chain, placed, 1)).status.kind == "Executed"
        assert outcome.proposal is not None and outcome.proposal.status == "executed"
    else:
        with pytest.raises(errors.ProposalClosed, match=f"was {ending}"):
            await outcome.state.aresult()
        assert now_hash == v1
        assert outcome.proposal is not None and outcome.proposal.status == ending

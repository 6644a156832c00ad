"""The steps of the upgrade under Squads against the localnet, with Multisig, Proposal and
VaultTransaction accounts serialized by the official SDK (``@sqds/multisig``) and written
at their PDAs, owned by the Squads program id: the wait reads each Proposal state (Active,
Approved, the time lock on the cluster clock, Rejected, Cancelled, none), the create and
execute instructions equal the SDK's, and a rerun finds its own vault transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy.engine import Engine

from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import AccountNotFound, ProposalClosed
from localnet import LocalnetServer
from programs.send import Signed
from programs.squads import client as squads
from store.records import transactions as journal_records
from store.records.proposals import ProposalRecord
from tasks import squads as squads_tasks
from tasks.records import records_engine
from tests.squads_localnet import (
    PlacedMultisig,
    message_fields,
    place_multisig,
    place_vault_transaction,
)
from tests.squads_sdk import described, sdk

VOTE_ALL = int(squads.ALL_PERMISSIONS)
RUNBOOK = int(squads.Permission.INITIATE | squads.Permission.EXECUTE)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture
def cluster(server: LocalnetServer) -> SolanaCluster:
    return SolanaCluster(cluster="localnet", rpc_urls=[server.url])


@pytest.fixture
def voters() -> list[Keypair]:
    return [Keypair() for _ in range(3)]


@pytest.fixture
def placed(server: LocalnetServer, voters: list[Keypair]) -> PlacedMultisig:
    ms = place_multisig(server.localnet, [(v, VOTE_ALL) for v in voters], time_lock=100)
    ms.put()
    return ms


def upgrade_of(ms: PlacedMultisig, index: int = 1) -> squads_tasks.SquadsUpgrade:
    return squads_tasks._created(ms.address, index, str(Keypair().pubkey()), "")


def now(server: LocalnetServer) -> int:
    return server.localnet.unix_timestamp()


def stepping(*steps: Callable[[], None]) -> tuple[list[float], Any]:
    """A sleep that records its seconds and moves the chain one step on each call."""
    slept: list[float] = []
    pending = list(steps)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        pending.pop(0)()

    return slept, sleep


async def test_the_wait_follows_active_to_approved_then_the_time_lock_on_the_cluster_clock(
    prefect_api: None,
    server: LocalnetServer,
    cluster: SolanaCluster,
    placed: PlacedMultisig,
    voters: list[Keypair],
) -> None:
    upgrade = upgrade_of(placed)
    placed.put_proposal(1, "Active", now(server))
    approved_at = now(server) - 10
    slept, sleep = stepping(
        lambda: placed.put_proposal(1, "Active", now(server), approved=[voters[0].pubkey()]),
        lambda: placed.put_proposal(
            1, "Approved", approved_at, approved=[v.pubkey() for v in voters[:2]]
        ),
    )
    found = await squads_tasks.wait_for_approval(
        cluster, upgrade, poll_seconds=7, timeout_seconds=3600, sleep=sleep
    )
    assert found.status == squads.ProposalStatus("Approved", approved_at)
    assert found.approved == (voters[0].pubkey(), voters[1].pubkey())
    assert slept == [7, 7]

    # 90 s of the 100 s time lock left on the cluster's clock (not the local one): wait,
    # then the cluster clock moves past it.
    def clock_passes() -> None:
        server.localnet.clock_offset_seconds += 100

    slept, sleep = stepping(clock_passes)
    offset = server.localnet.clock_offset_seconds
    try:
        found = await squads_tasks.wait_out_time_lock(
            cluster, upgrade, placed.time_lock, poll_seconds=3600, sleep=sleep
        )
    finally:
        server.localnet.clock_offset_seconds = offset
    assert found.status.kind == "Approved"
    assert len(slept) == 1 and 0 < slept[0] <= 90


@pytest.mark.parametrize("kind", ["Rejected", "Cancelled"])
async def test_rejected_or_cancelled_ends_the_wait_as_a_rejection(
    prefect_api: None,
    server: LocalnetServer,
    cluster: SolanaCluster,
    placed: PlacedMultisig,
    voters: list[Keypair],
    kind: str,
) -> None:
    upgrade = upgrade_of(placed)
    votes = {kind.lower(): [voters[0].pubkey(), voters[1].pubkey()]}
    placed.put_proposal(1, kind, now(server), **votes)
    with pytest.raises(ProposalClosed) as closed:
        await squads_tasks.wait_for_approval(cluster, upgrade, poll_seconds=1, timeout_seconds=60)
    assert isinstance(closed.value, squads_tasks.SquadsProposalClosed)
    assert closed.value.status == kind.lower()
    assert f"was {kind.lower()} by {voters[0].pubkey()}" in str(closed.value)

    # The same during the time lock: a cancel after approval ends the run.
    placed.put_proposal(1, kind, now(server), **votes)
    with pytest.raises(ProposalClosed, match=f"was {kind.lower()}"):
        await squads_tasks.wait_out_time_lock(cluster, upgrade, 100, poll_seconds=1)


async def test_a_missing_proposal_and_a_stuck_one_are_named(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster, placed: PlacedMultisig
) -> None:
    with pytest.raises(AccountNotFound, match="no Squads proposal 5 of multisig"):
        await squads_tasks.wait_for_approval(
            cluster, upgrade_of(placed, 5), poll_seconds=1, timeout_seconds=60
        )
    placed.put_proposal(2, "Active", now(server))
    slept, sleep = stepping(lambda: None, lambda: None)
    with pytest.raises(ProposalClosed, match="still Active after 2 s"):
        await squads_tasks.wait_for_approval(
            cluster, upgrade_of(placed, 2), poll_seconds=1, timeout_seconds=2, sleep=sleep
        )
    assert slept == [1, 1]


def upgrade_ix(multisig: Pubkey, spill: Pubkey) -> tuple[Pubkey, Any]:
    vault = squads.vault_pda(multisig, 0)[0]
    ix = squads_tasks.upgrade_instruction(
        str(Keypair().pubkey()), str(Keypair().pubkey()), vault, str(spill)
    )
    return vault, ix


def test_the_create_and_execute_instructions_equal_the_sdks() -> None:
    create_key, creator, spill = (Keypair().pubkey() for _ in range(3))
    multisig = squads.multisig_pda(create_key)[0]
    vault, ix = upgrade_ix(multisig, spill)
    ours = squads_tasks.create_instructions(multisig, 4, creator, [ix], "runbooks upgrade #1")
    sdk_ix = described(ix)
    message = squads.compile_message([ix], vault)
    fields = {
        "multisig": str(multisig),
        "creator": str(creator),
        "index": "4",
        "bump": squads.transaction_pda(multisig, 4)[1],
        "vaultIndex": 0,
        "vaultBump": squads.vault_pda(multisig, 0)[1],
        "ephemeralSignerBumps": "",
        "message": message_fields(message),
    }
    theirs = sdk(
        [
            {
                "op": "ix",
                "name": "vaultTransactionCreate",
                "args": {
                    "multisig": str(multisig),
                    "transactionIndex": "4",
                    "creator": str(creator),
                    "vaultIndex": 0,
                    "ephemeralSigners": 0,
                    "instructions": [sdk_ix],
                    "memo": "runbooks upgrade #1",
                },
            },
            {
                "op": "ix",
                "name": "proposalCreate",
                "args": {
                    "multisig": str(multisig),
                    "transactionIndex": "4",
                    "creator": str(creator),
                    "isDraft": False,
                },
            },
            {"op": "serialize", "account": "VaultTransaction", "fields": fields},
        ]
    )
    assert [described(i) for i in ours] == theirs[:2]
    stored = squads.decode_vault_transaction(bytes.fromhex(theirs[2]))
    assert stored.message == message
    member = Keypair().pubkey()
    execute = squads.vault_transaction_execute(multisig=multisig, member=member, transaction=stored)
    (sdk_execute,) = sdk(
        [
            {
                "op": "ix",
                "name": "vaultTransactionExecute",
                "args": {
                    "multisig": str(multisig),
                    "transactionIndex": "4",
                    "member": str(member),
                    "account": theirs[2],
                },
            }
        ]
    )
    assert described(execute) == sdk_execute
    # The vault signs the Upgrade inside; the buffer's lamports go to the fixed spill.
    keys = [k for k, _, _ in sdk_execute["keys"][4:]]
    assert keys[0] == str(vault) and str(spill) in keys


@pytest.fixture
def records(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


async def test_a_rerun_finds_its_own_vault_transaction_and_creates_none(
    prefect_api: None,
    server: LocalnetServer,
    cluster: SolanaCluster,
    placed: PlacedMultisig,
    records: Engine,
) -> None:
    runbook = Keypair()
    await SolanaKeypair.from_keypair(runbook).asave("squads-runbook-key", overwrite=True)
    server.localnet.airdrop(runbook.pubkey(), 10**9)
    program, buffer, spill = (str(Keypair().pubkey()) for _ in range(3))
    proposal = ProposalRecord.model_construct(
        id=7, kind="upgrade", program_id=program, buffer=buffer
    )
    vault, _ = squads.vault_pda(placed.address, 0)
    ix = squads_tasks.upgrade_instruction(program, buffer, vault, spill)
    message = squads.compile_message([ix], vault)
    place_vault_transaction(server.localnet, placed.address, 3, runbook.pubkey(), message)
    placed.transaction_index = 3
    placed.put()
    slot = server.localnet.slot

    found = await squads_tasks.create_upgrade_proposal(
        cluster, proposal, str(placed.address), spill, "squads-runbook-key"
    )
    assert (found.transaction_index, found.spill) == (3, spill)
    assert found.proposal == str(squads.proposal_pda(placed.address, 3)[0])
    assert found.link == f"https://app.squads.so/squads/{placed.address}/transactions/3"
    assert server.localnet.slot == slot  # nothing sent


async def test_a_rerun_finds_the_create_its_journal_says_landed(
    prefect_api: None,
    server: LocalnetServer,
    cluster: SolanaCluster,
    placed: PlacedMultisig,
    records: Engine,
) -> None:
    runbook = Keypair()
    await SolanaKeypair.from_keypair(runbook).asave("squads-runbook-key-2", overwrite=True)
    proposal = ProposalRecord.model_construct(
        id=8, kind="upgrade", program_id=str(Keypair().pubkey()), buffer=str(Keypair().pubkey())
    )
    purpose = squads_tasks.create_purpose(8)
    journalled = str(Keypair().pubkey())
    landed = Signed(str(Signature.new_unique()), "AAAA", 0)
    journal_records.write_ahead(
        records,
        purpose,
        [landed],
        details={"transaction_index": 5, "multisig": "x", "spill": journalled},
    )
    journal_records.settle(records, landed.signature, "landed")
    slot = server.localnet.slot
    spill = str(Keypair().pubkey())  # the block's spill changed since: the journal's stays
    found = await squads_tasks.create_upgrade_proposal(
        cluster, proposal, str(placed.address), spill, "squads-runbook-key-2"
    )
    assert (found.transaction_index, found.signature) == (5, landed.signature)
    assert found.spill == journalled
    assert found.transaction == str(squads.transaction_pda(placed.address, 5)[0])
    assert server.localnet.slot == slot

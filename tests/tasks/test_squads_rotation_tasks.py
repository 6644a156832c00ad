"""The key rotation's steps under Squads, and the approval wait that hands a pending
proposal back to the flow (which suspends), against the localnet with accounts the
official SDK (``@sqds/multisig``) serialized: the create and execute instructions of a
SetAuthorityChecked from the vault equal the SDK's, the new authority a signer of the
execute transaction; a rerun finds its own vault transaction and sends nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy.engine import Engine

from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from localnet import LocalnetServer
from programs import loader
from programs.squads import client as squads
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


@pytest.fixture
def records(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


def test_the_rotation_create_and_execute_equal_the_sdks() -> None:
    """SetAuthorityChecked in a vault transaction: the vault is the current authority
    (the program signs for it), the new authority a signer the outer transaction carries:
    the SDK's accountsForTransactionExecute marks it a signer among the remaining accounts,
    as ours does."""
    multisig = squads.multisig_pda(Keypair().pubkey())[0]
    creator, member, new_authority = (Keypair().pubkey() for _ in range(3))
    program = str(Keypair().pubkey())
    vault = squads_tasks.vault_of(str(multisig))
    rotate = squads_tasks.set_authority_instruction(program, vault, str(new_authority))
    programdata = loader.programdata_address(Pubkey.from_string(program))
    assert rotate == loader.set_authority_checked(programdata, vault, new_authority)
    ours = squads_tasks.create_instructions(multisig, 5, creator, [rotate], "rotation #2")
    message = squads.compile_message([rotate], vault)
    fields = {
        "multisig": str(multisig),
        "creator": str(creator),
        "index": "5",
        "bump": squads.transaction_pda(multisig, 5)[1],
        "vaultIndex": 0,
        "vaultBump": squads.vault_pda(multisig, 0)[1],
        "ephemeralSignerBumps": "",
        "message": message_fields(message),
    }
    common = {"multisig": str(multisig), "transactionIndex": "5", "creator": str(creator)}
    theirs = sdk(
        [
            {
                "op": "ix",
                "name": "vaultTransactionCreate",
                "args": {
                    **common,
                    "vaultIndex": 0,
                    "ephemeralSigners": 0,
                    "instructions": [described(rotate)],
                    "memo": "rotation #2",
                },
            },
            {"op": "ix", "name": "proposalCreate", "args": {**common, "isDraft": False}},
            {"op": "serialize", "account": "VaultTransaction", "fields": fields},
        ]
    )
    assert [described(i) for i in ours] == theirs[:2]
    stored = squads.decode_vault_transaction(bytes.fromhex(theirs[2]))
    assert stored.message == message
    execute = squads.vault_transaction_execute(multisig=multisig, member=member, transaction=stored)
    (sdk_execute,) = sdk(
        [
            {
                "op": "ix",
                "name": "vaultTransactionExecute",
                "args": {
                    "multisig": str(multisig),
                    "transactionIndex": "5",
                    "member": str(member),
                    "account": theirs[2],
                },
            }
        ]
    )
    assert described(execute) == sdk_execute
    signers = [k for k, signer, _ in sdk_execute["keys"] if signer]
    assert signers == [str(member), str(new_authority)]  # never the vault: a PDA
    assert str(vault) in [k for k, _, _ in sdk_execute["keys"][4:]]


async def test_a_rerun_finds_its_own_rotation_and_creates_none(
    prefect_api: None,
    server: LocalnetServer,
    cluster: SolanaCluster,
    placed: PlacedMultisig,
    records: Engine,
) -> None:
    runbook = Keypair()
    await SolanaKeypair.from_keypair(runbook).asave("squads-rotation-key", overwrite=True)
    program, new_authority = str(Keypair().pubkey()), str(Keypair().pubkey())
    proposal = ProposalRecord.model_construct(id=11, kind="set-authority", program_id=program)
    vault = squads_tasks.vault_of(str(placed.address))
    rotate = squads_tasks.set_authority_instruction(program, vault, new_authority)
    message = squads.compile_message([rotate], vault)
    place_vault_transaction(server.localnet, placed.address, 2, runbook.pubkey(), message)
    placed.transaction_index = 2
    placed.put()
    slot = server.localnet.slot
    found = await squads_tasks.create_set_authority_proposal(
        cluster, proposal, str(placed.address), new_authority, "squads-rotation-key"
    )
    assert found.transaction_index == 2 and found.spill == ""
    assert found.proposal == str(squads.proposal_pda(placed.address, 2)[0])
    assert server.localnet.slot == slot  # nothing sent


async def test_the_wait_hands_back_a_proposal_still_active_after_the_inline_limit(
    prefect_api: None, server: LocalnetServer, cluster: SolanaCluster, placed: PlacedMultisig
) -> None:
    """On a deployment the flow suspends then: the wait returns the pending Proposal after
    ``inline_seconds`` instead of holding the worker until the sign-off window ends."""
    upgrade = squads_tasks._created(placed.address, 1, "", "")
    placed.put_proposal(1, "Active", server.localnet.unix_timestamp())
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    found = await squads_tasks.wait_for_approval(
        cluster, upgrade, poll_seconds=5, timeout_seconds=3600, inline_seconds=10, sleep=sleep
    )
    assert found.status.kind == "Active" and slept == [5, 5]

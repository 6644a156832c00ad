"""The key rotation and the emergency rollback on a Squads v4 policy, on a localnet with
demo_vault whose upgrade authority is the vault of a multisig serialized by the official
SDK.

Here (no Squads binary): bad input is refused before anything is recorded or sent; each
run gets as far as the create of its vault transaction (recorded with the multisig's own
voters, threshold and time lock; the rollback's buffer handed to the vault), and the
rotation's execution refuses a proposal not approved or not this rotation's. End to end
runs only with RUNBOOKS_SQUADS_SO.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from sqlalchemy import Engine, select

from blocks import MultisigPolicy, SolanaCluster, SolanaKeypair
from core import errors
from flows.key_rotation import rotate_upgrade_authority
from flows.rollback import emergency_rollback
from programs import loader
from programs.squads import client as squads
from runbooks.demo import DemoChain
from runbooks.demo_migration import current_proposal_message, run_signed_flow, upgrade_directly
from store.db import session_scope
from store.models import Proposal
from store.records import kill_switch as kill_switch_records
from store.records import proposals as proposals_records
from store.records import transactions as journal_records
from store.records.kill_switch import RELEASE_KIND
from store.records.proposals import ProposalRecord
from tasks import squads as squads_tasks
from tasks.archive import archive_program
from tests.flows.test_upgrade_squads import (
    RUNBOOK,
    VOTE_ALL,
    authority_of,
    programdata_hash,
    proposal_of,
    row_counts,
    squads_policy,
    vote,
)
from tests.squads_localnet import (
    PlacedMultisig,
    place_multisig,
    place_vault_transaction,
    squads_binary,
)


async def new_authority_block(name: str) -> Keypair:
    new = Keypair()
    await SolanaKeypair.from_keypair(new).asave(name, overwrite=True)
    return new


async def rotate(chain: DemoChain, names: dict[str, str], **params: Any) -> Any:
    state = await rotate_upgrade_authority(
        program_id=str(chain.program_id),
        reason="scheduled rotation",
        proposer="on-call",
        programs_block=None,
        **names,
        **params,
        return_state=True,
    )
    return await state.aresult()


async def rollback(chain: DemoChain, names: dict[str, str]) -> Any:
    state = await emergency_rollback(
        program_id=str(chain.program_id),
        reason="v2 drains vaults",
        proposer="on-call",
        **names,
        return_state=True,
    )
    return await state.aresult()


def programdata_authority(chain: DemoChain) -> str | None:
    return authority_of(chain, loader.programdata_address(chain.program_id))


def proposals_of(engine: Engine, kind: str) -> list[Proposal]:
    with session_scope(engine) as session:
        return list(session.scalars(select(Proposal).where(Proposal.kind == kind)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_rotation_squads_cannot_do_is_refused_before_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names)
    vault = str(squads.vault_pda(placed.address, 0)[0])
    await new_authority_block("squads-new-authority")
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    with pytest.raises(errors.InputError, match="make_immutable, new_governance and adopt"):
        await rotate(
            chain, block_names, make_immutable=True, confirm_program_id=str(chain.program_id)
        )
    with pytest.raises(errors.InputError, match="not the new authority"):
        await rotate(
            chain,
            block_names,
            new_authority=str(Keypair().pubkey()),
            new_authority_block="squads-new-authority",
        )
    with pytest.raises(errors.InputError, match="make_immutable, new_governance and adopt"):
        await rotate(chain, block_names, new_governance=str(Keypair().pubkey()))
    assert row_counts(records_db) == before and chain.server.localnet.slot == slot
    assert programdata_authority(chain) == vault


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_rotation_by_a_runbook_key_that_can_vote_is_refused_before_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names, runbook_permissions=VOTE_ALL)
    new = await new_authority_block("squads-new-authority")
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    with pytest.raises(errors.PolicyViolation, match="has Vote permission"):
        await rotate(
            chain,
            block_names,
            new_authority=str(new.pubkey()),
            new_authority_block="squads-new-authority",
        )
    assert row_counts(records_db) == before and chain.server.localnet.slot == slot
    assert programdata_authority(chain) == str(squads.vault_pda(placed.address, 0)[0])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_the_squads_program_the_rotation_gets_as_far_as_the_create(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names, time_lock=45)
    vault = str(squads.vault_pda(placed.address, 0)[0])
    new = await new_authority_block("squads-new-authority")
    with pytest.raises(errors.TransactionFailed, match="InvalidProgramForExecution"):
        await rotate(
            chain,
            block_names,
            new_authority=str(new.pubkey()),
            new_authority_block="squads-new-authority",
        )
    [proposal] = proposals_of(records_db, "set-authority")
    assert (proposal.backend, proposal.governance) == ("squads", str(placed.address))
    assert sorted(proposal.members) == sorted(str(m.pubkey()) for m in chain.members[:3])
    assert (proposal.threshold, proposal.timelock_seconds) == (2, 45)
    assert str(new.pubkey()) in proposal.description
    assert programdata_authority(chain) == vault
    assert chain.server.localnet.get_account(squads.proposal_pda(placed.address, 1)[0]) is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_rotation_execution_refuses_another_key_a_pending_proposal_or_another_change(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names)
    net = chain.server.localnet
    cluster = await SolanaCluster.aload(block_names["cluster_block"])
    fee_payer = block_names["fee_payer_block"]
    program = str(chain.program_id)
    vault = squads.vault_pda(placed.address, 0)[0]
    new = await new_authority_block("squads-new-authority")
    target = str(new.pubkey())
    proposal = ProposalRecord.model_construct(id=12, kind="set-authority", program_id=program)
    rotate_ix = squads_tasks.set_authority_instruction(program, vault, target)
    message = squads.compile_message([rotate_ix], vault)
    place_vault_transaction(net, placed.address, 1, chain.authority.pubkey(), message)
    created = squads_tasks._created(placed.address, 1, "", "")
    args = (cluster, proposal, created)
    slot = net.slot

    with pytest.raises(errors.InputError, match="does not hold"):
        await squads_tasks.send_squads_set_authority(
            *args, str(Keypair().pubkey()), "squads-new-authority", fee_payer
        )
    placed.put_proposal(1, "Active", net.unix_timestamp())
    with pytest.raises(errors.ChainError, match="is Active, not Approved: not executed"):
        await squads_tasks.send_squads_set_authority(
            *args, target, "squads-new-authority", fee_payer
        )
    # Approved, but the stored message hands the program to someone else: not executed.
    placed.put_proposal(1, "Approved", net.unix_timestamp())
    await new_authority_block("squads-other-authority")
    other = (await SolanaKeypair.aload("squads-other-authority")).keypair().pubkey()
    with pytest.raises(errors.ChainError, match="is not this runbook's key rotation"):
        await squads_tasks.send_squads_set_authority(
            *args, str(other), "squads-other-authority", fee_payer
        )
    assert net.slot == slot  # nothing sent
    assert programdata_authority(chain) == str(vault)

    # An earlier attempt's execute landed (the program has the new authority): a rerun
    # sends nothing. Written straight into ProgramData as the execute would leave it.
    programdata = loader.programdata_address(chain.program_id)
    with net.lock:
        account = net.svm.get_account(programdata)
        assert account is not None
        data = bytearray(account.data)
        data[12:45] = b"\x01" + bytes(new.pubkey())
        net.svm.set_account(
            programdata,
            Account(account.lamports, bytes(data), account.owner, account.executable, 0),
        )
    assert programdata_authority(chain) == target
    assert (
        await squads_tasks.send_squads_set_authority(
            *args, target, "squads-new-authority", fee_payer
        )
        is None
    )
    assert net.slot == slot


async def archived_then_upgraded(chain: DemoChain, names: dict[str, str]) -> str:
    """v1 archived (as the upgrade runbook does before executing), the program at v2."""
    cluster = await SolanaCluster.aload(names["cluster_block"])
    v1 = programdata_hash(chain)
    await archive_program(cluster, str(chain.program_id))
    await upgrade_directly(chain, chain.binaries["v2"])
    return v1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_rollback_of_a_program_the_vault_does_not_hold_is_refused_before_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    # The policy names a multisig whose vault does not hold demo_vault's authority.
    placed = place_multisig(
        chain.server.localnet,
        [*((m, VOTE_ALL) for m in chain.members[:3]), (chain.authority, RUNBOOK)],
    )
    placed.put()
    policy = await MultisigPolicy.aload(block_names["policy_block"])
    policy.backend, policy.squads_multisig = "squads", str(placed.address)
    await policy.asave(block_names["policy_block"], overwrite=True)
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    with pytest.raises(errors.AuthorityMismatch, match="not the Squads vault"):
        await rollback(chain, block_names)
    assert row_counts(records_db) == before and chain.server.localnet.slot == slot
    assert not kill_switch_records.engaged_kill_switches(
        records_db, "localnet", str(chain.program_id)
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_without_the_squads_program_the_rollback_gets_as_far_as_the_create(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    """The archived binary's buffer is written and handed to the vault, the proposal
    recorded under the multisig's one threshold and time lock (Squads has no emergency
    one), the kill switch engaged; the runtime then refuses the create."""
    v1 = await archived_then_upgraded(chain, block_names)
    placed = await squads_policy(chain, block_names, time_lock=30)
    vault = str(squads.vault_pda(placed.address, 0)[0])
    with pytest.raises(errors.TransactionFailed, match="InvalidProgramForExecution"):
        await rollback(chain, block_names)
    [proposal] = proposals_of(records_db, "rollback")
    assert (proposal.backend, proposal.governance) == ("squads", str(placed.address))
    assert (proposal.threshold, proposal.timelock_seconds) == (2, 30)
    assert proposal.buffer_hash == v1 and proposal.buffer is not None
    assert authority_of(chain, Pubkey.from_string(proposal.buffer)) == vault
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", str(chain.program_id))
    assert programdata_hash(chain) != v1


@dataclass(frozen=True)
class LandedCreate:
    """The journal's view of a sent transaction (``programs.send.Signed``'s fields)."""

    signature: str
    wire: str = ""
    last_valid_block_height: int = 0


async def executed_in_the_squads_app(
    chain: DemoChain,
    engine: Engine,
    placed: PlacedMultisig,
    v1_programdata: Account,
    voters: list[Keypair],
) -> None:
    """Once the run waits on Squads proposal 1: ProgramData as the vault's execute of the
    rollback leaves it (v1's code, the vault still the authority), the proposal Executed."""
    net = chain.server.localnet
    for _ in range(240):
        proposal = proposals_records.get_proposal(engine, 1)
        if proposal is not None and proposal.onchain_address:
            break
        await asyncio.sleep(0.25)
    else:
        raise AssertionError("the rollback never reached its wait on Squads proposal 1")
    vault = squads.vault_pda(placed.address, 0)[0]
    data = bytearray(v1_programdata.data)
    data[4:12] = net.slot.to_bytes(8, "little")
    data[12:45] = b"\x01" + bytes(vault)
    programdata = loader.programdata_address(chain.program_id)
    with net.lock:
        net.svm.set_account(
            programdata,
            Account(v1_programdata.lamports, bytes(data), v1_programdata.owner, False, 0),
        )
    placed.put_proposal(1, "Executed", net.unix_timestamp(), approved=[v.pubkey() for v in voters])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_after_a_verified_squads_rollback_the_multisig_voters_release_the_kill_switch(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    """Steps 6-8 here, without the Squads program: the create is found landed in the
    runbook's journal (as a retried create task finds it), members approve and execute in
    the Squads app (the accounts written as the program leaves them); the runbook finds the
    program already at the archived hash, verifies it, and asks for the kill switch's
    release, which two of the multisig's voters sign."""
    net = chain.server.localnet
    v1_programdata = net.get_account(loader.programdata_address(chain.program_id))
    assert v1_programdata is not None
    v1 = await archived_then_upgraded(chain, block_names)
    placed = await squads_policy(chain, block_names)
    landed = LandedCreate(signature=str(Signature.new_unique()))
    details = {"transaction_index": 1, "multisig": str(placed.address)}
    purpose = squads_tasks.create_purpose(1)  # the records' first proposal: this rollback's
    journal_records.write_ahead(
        records_db, purpose, [landed], details={**details, "spill": str(chain.authority.pubkey())}
    )
    journal_records.settle(records_db, landed.signature, "landed")
    placed.put_proposal(1, "Active", net.unix_timestamp())
    voters = chain.members[:3]
    executing = asyncio.create_task(
        executed_in_the_squads_app(chain, records_db, placed, v1_programdata, voters[:2])
    )
    result = await asyncio.wait_for(
        run_signed_flow(
            lambda: rollback(chain, block_names),
            [[chain.members[3], voters[0], voters[1]]],
            lambda run_id, _: current_proposal_message(run_id, RELEASE_KIND),
        ),
        timeout=240,
    )
    await executing
    assert result["proposal_id"] == 1 and result["backend"] == "squads"
    assert result["restored_hash"] == v1 == programdata_hash(chain)
    assert result["signature"] is None  # executed in the Squads app: nothing sent
    assert result["kill_switch_engaged"] is False
    assert not kill_switch_records.engaged_kill_switches(
        records_db, "localnet", str(chain.program_id)
    )
    release = proposals_records.get_proposal(records_db, result["release_proposal_id"])
    assert release is not None and release.status == "executed"
    assert sorted(release.members) == sorted(str(v.pubkey()) for v in voters)
    assert (release.threshold, release.governance) == (2, str(placed.address))
    attempts = proposals_records.approvals(records_db, release.id)
    assert [a.member for a in attempts if not a.accepted] == [str(chain.members[3].pubkey())]
    assert sorted(a.member for a in attempts if a.accepted) == sorted(
        str(v.pubkey()) for v in voters[:2]
    )


# --- end to end: only with the real Squads program (RUNBOOKS_SQUADS_SO) -----------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rotation_end_to_end_with_the_real_squads_program(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine, tmp_path: Path
) -> None:
    squads_binary()  # skips, saying how to get it, when absent
    for member in chain.members[:3]:
        chain.server.localnet.airdrop(member.pubkey(), 10**9)
    placed = await squads_policy(chain, block_names, time_lock=2)
    new = await new_authority_block("squads-new-authority")
    run = asyncio.create_task(
        rotate(
            chain,
            block_names,
            new_authority=str(new.pubkey()),
            new_authority_block="squads-new-authority",
        )
    )
    await proposal_of(chain, placed, 1)
    for member in chain.members[:2]:
        await vote(chain, placed, 1, member, tmp_path)
    result = await asyncio.wait_for(run, timeout=180)
    assert result["new_authority"] == str(new.pubkey()) == programdata_authority(chain)
    assert (await proposal_of(chain, placed, 1)).status.kind == "Executed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rollback_end_to_end_with_the_real_squads_program(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine, tmp_path: Path
) -> None:
    squads_binary()
    for member in chain.members[:3]:
        chain.server.localnet.airdrop(member.pubkey(), 10**9)
    v1 = await archived_then_upgraded(chain, block_names)
    placed = await squads_policy(chain, block_names, time_lock=2)

    async def votes() -> None:
        await proposal_of(chain, placed, 1)
        for member in chain.members[:2]:
            await vote(chain, placed, 1, member, tmp_path)

    voting = asyncio.create_task(votes())
    # After the verified rollback, two of the multisig's voters sign the kill switch's
    # release line (its threshold): the switch is released.
    result = await asyncio.wait_for(
        run_signed_flow(
            lambda: rollback(chain, block_names),
            [chain.members[:2]],
            lambda run_id, _: current_proposal_message(run_id, RELEASE_KIND),
        ),
        timeout=240,
    )
    await voting
    assert result["restored_hash"] == v1 == programdata_hash(chain)
    assert result["kill_switch_engaged"] is False and result["release_proposal_id"]
    assert not kill_switch_records.engaged_kill_switches(
        records_db, "localnet", str(chain.program_id)
    )

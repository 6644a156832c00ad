"""Key rotation with the onchain backend: moving a managed program's upgrade authority away
from the governance is an upgrade_manager set-authority proposal (signed off, relayed,
timelocked, executed by the program), checked on chain and recorded; what the program
cannot do is refused before anything is written.

A real Prefect API, a real localnet with upgrade_manager, a 3-of-5 governance (1 s
timelock) whose PDA is demo_vault's upgrade authority, and a records database. The
authority block the flow is given is never saved: no upgrade key is read.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select

from blocks import SolanaKeypair
from core import approval
from core.errors import AccountNotFound, AuthorityMismatch, InputError
from flows.key_rotation import rotate_upgrade_authority
from programs import loader, rpc, send
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import Governance, Proposal, ProposalKind, ProposalStatus
from runbooks.console import pause_description, sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run, save_blocks, setup_governance
from runbooks.demo_migration import current_onchain_message
from store.db import session_scope
from store.models import Proposal as ProposalRow
from store.records import key_rotation as key_rotation_records
from store.records import proposals


def account(chain: DemoChain, address: Pubkey) -> bytes:
    found = chain.server.localnet.get_account(address)
    assert found is not None, address
    return bytes(found.data)


def authority_of(chain: DemoChain) -> Pubkey | None:
    state = loader.decode_state(account(chain, loader.programdata_address(chain.program_id)))
    assert isinstance(state, loader.ProgramData)
    return state.authority


def proposal_count(chain: DemoChain) -> int:
    assert chain.governance is not None
    return Governance.decode(account(chain, chain.governance)).proposal_count


@pytest.fixture
async def managed(prefect_api: None, chain: DemoChain, records_db: Engine) -> dict[str, Any]:
    await setup_governance(chain, timelock_seconds=1)
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    names = await save_blocks(chain, prefix=prefix, timelock_seconds=1, backend="onchain")
    names["authority_block"] = f"{prefix}-no-upgrade-key"  # never saved
    return {
        "program_id": str(chain.program_id),
        "reason": "hand the program to the new team",
        "proposer": "on-call",
        "programs_block": None,
        **names,
    }


async def run_signed(
    chain: DemoChain, params: dict[str, Any], signers: list[Keypair]
) -> tuple[State, str]:
    """Run the rotation; ``signers`` sign upgrade_manager's line in the pause form."""
    tag = f"rot-{uuid.uuid4().hex[:10]}"
    with tags(tag):
        flow = asyncio.ensure_future(rotate_upgrade_authority(**params, return_state=True))
    run_id = await find_run(tag)
    async with get_client() as client:
        run = await wait_for_pause(client, run_id, timeout_seconds=120)
        assert run.state is not None
        form = await pause_description(client, run_id, run.state.state_details.pause_key or "")
        line = await current_onchain_message(run_id, "set-authority", chain.url)
        key = None
        for member in signers:
            key = await sign_off(
                client,
                run_id,
                {"member": str(member.pubkey()), "signature": str(approval.sign(member, line))},
                after_key=key,
            )
    return await asyncio.wait_for(flow, timeout=120), form


def executed_proposal(chain: DemoChain, records_db: Engine) -> tuple[Any, Proposal]:
    with session_scope(records_db) as session:
        [proposal_id] = session.scalars(select(ProposalRow.id)).all()
    record = proposals.get_proposal(records_db, proposal_id)
    assert record is not None and record.onchain_address is not None
    return record, Proposal.decode(account(chain, Pubkey.from_string(record.onchain_address)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_moving_the_authority_to_a_key_is_a_signed_off_set_authority_proposal(
    chain: DemoChain, managed: dict[str, Any], records_db: Engine
) -> None:
    new = Keypair()
    block = f"{managed['cluster_block']}-new-key"
    await SolanaKeypair.from_keypair(new).asave(block, overwrite=True)
    pda = um.authority_address(chain.governance)  # type: ignore[arg-type]
    code = loader.verifiable_hash(chain.binaries["v1"])

    state, form = await run_signed(
        chain,
        {**managed, "new_authority": str(new.pubkey()), "new_authority_block": block},
        chain.members[:3],
    )
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert authority_of(chain) == new.pubkey()
    assert result["backend"] == "onchain"
    assert (result["old_authority"], result["new_authority"]) == (str(pda), str(new.pubkey()))
    record, on_chain = executed_proposal(chain, records_db)
    assert (record.kind, record.status, record.backend) == ("set-authority", "executed", "onchain")
    assert result["onchain_proposal"] == record.onchain_address
    assert on_chain.kind == ProposalKind.SET_AUTHORITY
    assert on_chain.status == ProposalStatus.EXECUTED
    assert on_chain.new_authority == new.pubkey()
    assert on_chain.closed_at - on_chain.approved_at >= 1  # the governance's timelock
    # The form shows upgrade_manager's own line and how to sign it from the chain.
    assert f"new_authority: {new.pubkey()}" in form and "kind: set-authority" in form
    assert f"runbooks sign --onchain-proposal {record.onchain_address}" in form
    # Recorded; the code did not change on the way.
    [rotation] = key_rotation_records.rotations(records_db, str(chain.program_id))
    assert (rotation.old_authority, rotation.new_authority) == (str(pda), str(new.pubkey()))
    assert rotation.proposal_id == record.id
    async with AsyncClient(chain.url) as client:
        assert (await rpc.read_program(client, chain.program_id)).sha256 == code


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_moving_the_authority_to_another_governance_hands_it_to_that_pda(
    chain: DemoChain, managed: dict[str, Any], records_db: Engine
) -> None:
    # A second governance on the same upgrade_manager (the team taking the program over).
    create_key = Keypair()
    config = um.GovernanceConfig(
        members=tuple(m.pubkey() for m in chain.members[:3]),
        threshold=2,
        timelock=0,
        emergency_threshold=2,
        emergency_timelock=0,
    )
    async with AsyncClient(chain.url) as client:
        ix = um.create_governance(
            create_key.pubkey(),
            chain.authority.pubkey(),
            config,
            chain.server.localnet.genesis_hash,
        )
        await send.send_and_confirm(client, [ix], chain.authority, [create_key])
    other = um.governance_address(create_key.pubkey())

    params = {**managed, "new_governance": str(other)}
    state, _ = await run_signed(chain, params, chain.members[2:5])
    assert state.is_completed(), state.message
    assert authority_of(chain) == um.authority_address(other)
    _, on_chain = executed_proposal(chain, records_db)
    assert on_chain.new_authority == um.authority_address(other)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_what_upgrade_manager_cannot_do_is_refused_before_anything_is_written(
    chain: DemoChain, managed: dict[str, Any], records_db: Engine
) -> None:
    program_id = str(chain.program_id)
    balance = chain.server.localnet.get_account(chain.authority.pubkey()).lamports  # type: ignore[union-attr]

    with pytest.raises(InputError, match="upgrade_manager cannot make a program immutable"):
        await rotate_upgrade_authority(
            **managed, make_immutable=True, confirm_program_id=program_id
        )
    # Not a governance: a typo names no account, and nothing is proposed.
    with pytest.raises(AccountNotFound, match="does not exist"):
        await rotate_upgrade_authority(**managed, new_governance=str(Keypair().pubkey()))
    with pytest.raises(InputError, match="give one of"):
        await rotate_upgrade_authority(
            **managed, new_governance=str(Keypair().pubkey()), adopt=True
        )

    assert authority_of(chain) == um.authority_address(chain.governance)  # type: ignore[arg-type]
    assert proposal_count(chain) == 0
    with session_scope(records_db) as session:
        assert session.scalar(select(func.count()).select_from(ProposalRow)) == 0
    assert chain.server.localnet.get_account(chain.authority.pubkey()).lamports == balance  # type: ignore[union-attr]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_program_the_governance_does_not_manage_is_refused_naming_the_adopt(
    prefect_api: None, chain: DemoChain, records_db: Engine
) -> None:
    # A governance that does not hold demo_vault: its authority stays the deployer's key.
    await setup_governance(chain, timelock_seconds=1, adopt=False)
    names = await save_blocks(
        chain, prefix=f"t-{uuid.uuid4().hex[:10]}", timelock_seconds=1, backend="onchain"
    )
    new = Keypair()
    await SolanaKeypair.from_keypair(new).asave(f"{names['cluster_block']}-new", overwrite=True)
    with pytest.raises(AuthorityMismatch, match="adopt=true"):
        await rotate_upgrade_authority(
            program_id=str(chain.program_id),
            reason="move",
            proposer="on-call",
            new_authority=str(new.pubkey()),
            new_authority_block=f"{names['cluster_block']}-new",
            programs_block=None,
            **names,
        )
    assert proposal_count(chain) == 0
    assert authority_of(chain) == chain.authority.pubkey()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_adopt_hands_a_program_to_the_governance(
    prefect_api: None, chain: DemoChain, records_db: Engine
) -> None:
    await setup_governance(chain, timelock_seconds=1, adopt=False)
    names = await save_blocks(
        chain, prefix=f"t-{uuid.uuid4().hex[:10]}", timelock_seconds=1, backend="onchain"
    )
    result = await rotate_upgrade_authority(
        program_id=str(chain.program_id),
        reason="the governance takes the program over",
        proposer="on-call",
        adopt=True,
        programs_block=None,
        **names,
    )
    pda = um.authority_address(chain.governance)
    assert authority_of(chain) == pda
    assert result["new_authority"] == str(pda)
    [rotation] = key_rotation_records.rotations(records_db, str(chain.program_id))
    assert rotation.new_authority == str(pda)

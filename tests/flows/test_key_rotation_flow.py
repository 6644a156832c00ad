"""The key-rotation runbooks on the localnet, the harness and the records database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from solana.rpc.async_api import AsyncClient
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from sqlalchemy import Engine

from blocks import MultisigPolicy, SlackChannel, SolanaKeypair
from blocks.programs import ManagedProgram, ManagedPrograms
from core import approval
from core.errors import TransactionFailed
from domain import key_rotation
from flows.key_rotation import (
    change_subject,
    key_rotation_review,
    rotate_upgrade_authority,
    rotation_key,
)
from programs import loader, send
from runbooks.console import resume_with_input, sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run
from store.records import audit, proposals
from store.records import key_rotation as key_rotation_records
from tasks.records import proposal_by_key
from tests.stand_ins.slack_stub import SlackStub


@pytest.fixture
async def rotation_blocks(block_names, chain: DemoChain) -> dict[str, str]:
    """The demo blocks with a 2-of-3 policy and no timelock: sign-offs are what is tested."""
    name = f"{block_names['cluster_block']}-2of3"
    await MultisigPolicy(
        members=[str(m.pubkey()) for m in chain.members[:3]], threshold=2, timelock_seconds=0,
        min_timelock_seconds=0, backend="keypair",
    ).asave(name, overwrite=True)  # fmt: skip
    return {**block_names, "policy_block": name}


def authority_of(chain: DemoChain) -> str | None:
    account = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert account is not None
    state = loader.decode_state(bytes(account.data))
    return str(state.authority) if state.authority else None


async def run_with_signoffs(
    chain: DemoChain,
    signers: list[Keypair],
    new_authority: str | None,
    cancel_by: Keypair | None = None,
    **params: Any,
) -> tuple[Any, proposals.ProposalRecord | None]:
    """Run the rotation flow; each of ``signers`` signs its message in the pause form, then
    ``cancel_by`` signs a cancel in the timelock's pause form."""
    tag = f"rot-{uuid.uuid4().hex[:10]}"
    with tags(tag):
        flow_task = asyncio.create_task(
            rotate_upgrade_authority(
                program_id=str(chain.program_id),
                reason="scheduled rotation",
                proposer="on-call",
                new_authority=new_authority,
                **params,
                return_state=True,
            )
        )
    run_id = await find_run(tag)
    key = rotation_key("localnet", str(chain.program_id), new_authority, str(run_id))
    if signers:
        async with get_client() as client:
            await wait_for_pause(client, run_id)
            proposal = proposal_by_key(key)
            assert proposal is not None
            message = change_subject(proposal, new_authority).message("approve")
            after = None
            for member in signers:
                signature = str(approval.sign(member, message))
                after = await sign_off(
                    client, run_id, {"member": str(member.pubkey()), "signature": signature},
                    after_key=after,
                )  # fmt: skip
            if cancel_by is not None:
                run = await wait_for_pause(client, run_id, not_key=after)
                assert run.state is not None
                assert (run.state.state_details.pause_key or "").startswith("timelock-")
                cancel = change_subject(proposal, new_authority).message("cancel")
                await resume_with_input(
                    client, run_id,
                    {"member": str(cancel_by.pubkey()),
                     "signature": str(approval.sign(cancel_by, cancel))},
                )  # fmt: skip
    state = await asyncio.wait_for(flow_task, timeout=120)
    return state, proposal_by_key(key)


async def test_rotation_moves_the_authority_verifies_and_records(
    chain: DemoChain, rotation_blocks, records_db: Engine
) -> None:
    old = str(chain.authority.pubkey())
    new = Keypair()
    prefix = rotation_blocks["cluster_block"]
    await SolanaKeypair.from_keypair(new).asave(f"{prefix}-new-authority", overwrite=True)
    programs = ManagedPrograms(
        programs=[ManagedProgram(name="demo_vault", program_id=str(chain.program_id),
                                 expected_authority=old)]
    )  # fmt: skip
    await programs.asave(f"{prefix}-programs", overwrite=True)
    key_rotation_records.register_key(
        records_db, cluster="localnet", pubkey=old, role="upgrade", label="upgrade key 1",
        programs=[str(chain.program_id)], rotated_at=datetime.now(UTC) - timedelta(days=200),
    )  # fmt: skip

    state, proposal = await run_with_signoffs(
        chain,
        chain.members[:2],
        str(new.pubkey()),
        new_authority_block=f"{prefix}-new-authority",
        programs_block=f"{prefix}-programs",
        **rotation_blocks,
    )
    assert state.is_completed(), state.message
    result = await state.aresult()
    assert authority_of(chain) == str(new.pubkey())
    assert result["signature"] and result["old_authority"] == old
    assert proposal is not None and proposal.status == "executed"
    assert proposal.kind == "set-authority" and proposal.threshold == 2

    [rot] = key_rotation_records.rotations(records_db, str(chain.program_id))
    assert (rot.old_authority, rot.new_authority, rot.proposal_id) == (
        old, str(new.pubkey()), proposal.id,
    )  # fmt: skip
    registry = {
        k.pubkey: k for k in key_rotation_records.managed_keys(records_db, include_retired=True)
    }
    assert registry[old].retired_at is not None
    assert registry[str(new.pubkey())].active
    assert registry[str(new.pubkey())].programs == (str(chain.program_id),)
    # The health check now expects the new key.
    updated = await ManagedPrograms.aload(f"{prefix}-programs")
    assert updated.programs[0].expected_authority == str(new.pubkey())
    actions = [e.action for e in audit.audit_events(records_db, f"proposal:{proposal.id}")]
    assert actions[:2] == ["proposal.created", "key_rotation.proposed"]
    assert "proposal.status" in actions


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_transfer_the_new_authority_did_not_sign_is_refused(
    chain: DemoChain, block_names, records_db: Engine
) -> None:
    new = Keypair()
    prefix = block_names["cluster_block"]
    # The flow: the new authority's block must hold the new key, or nothing happens.
    await SolanaKeypair.from_keypair(Keypair()).asave(f"{prefix}-someone-else", overwrite=True)
    for block in (None, f"{prefix}-someone-else"):
        state, proposal = await run_with_signoffs(
            chain, [], str(new.pubkey()), new_authority_block=block, **block_names
        )
        assert state.is_failed() and "new authority" in state.message
        assert proposal is None
    assert authority_of(chain) == str(chain.authority.pubkey())

    # The chain: SetAuthorityChecked without the new authority's signature is refused.
    checked = loader.set_authority_checked(
        loader.programdata_address(chain.program_id), chain.authority.pubkey(), new.pubkey()
    )
    unsigned = Instruction(
        checked.program_id,
        checked.data,
        [*checked.accounts[:2], AccountMeta(new.pubkey(), is_signer=False, is_writable=False)],
    )
    async with AsyncClient(chain.url) as client:
        with pytest.raises(TransactionFailed, match="MissingRequiredSignature"):
            await send.send_and_confirm(client, [unsigned], chain.authority)
    assert authority_of(chain) == str(chain.authority.pubkey())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_immutable_needs_the_typed_program_id_and_every_member(
    chain: DemoChain, rotation_blocks, records_db: Engine
) -> None:
    program = str(chain.program_id)
    state, proposal = await run_with_signoffs(
        chain, [], None, make_immutable=True, confirm_program_id=program[:-1], **rotation_blocks
    )
    assert state.is_failed() and "type the program id" in state.message
    assert proposal is None and authority_of(chain) is not None

    # With the typed id: the threshold is every member (3), not the policy's 2.
    state, proposal = await run_with_signoffs(
        chain, chain.members[:3], None, make_immutable=True, confirm_program_id=program,
        **rotation_blocks,
    )  # fmt: skip
    assert state.is_completed(), state.message
    assert proposal.kind == "make-immutable" and proposal.threshold == 3
    assert len(proposals.accepted_approvals(records_db, proposal.id)) == 3
    assert authority_of(chain) is None
    [rot] = key_rotation_records.rotations(records_db, program)
    assert rot.new_authority is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_review_reminds_before_keys_are_due(
    prefect_api: None, chain: DemoChain, block_names, records_db: Engine
) -> None:
    now = datetime.now(UTC)
    keys = {
        "upgrade": (Keypair(), now - timedelta(days=170)),  # due in ~12 days: remind
        "emergency": (Keypair(), now - timedelta(days=100)),  # 3 months: overdue
        "governance": (Keypair(), now - timedelta(days=30)),  # due in 11 months
    }
    for role, (kp, at) in keys.items():
        key_rotation_records.register_key(
            records_db,
            cluster="localnet",
            pubkey=str(kp.pubkey()),
            role=role,
            label=f"{role} key",
            rotated_at=at,
        )
    with SlackStub() as slack:
        name = f"{block_names['cluster_block']}-slack"
        await SlackChannel(
            bot_token=slack.token, channel="#ops", api_base_url=slack.base_url
        ).asave(name, overwrite=True)
        result = await key_rotation_review(
            cluster_block=block_names["cluster_block"], slack_block=name
        )
    assert {r["role"]: r["status"] for r in result["keys"]} == {
        "upgrade": "due-soon", "emergency": "overdue", "governance": "ok",
    }  # fmt: skip
    [message] = slack.messages
    assert "2 key(s) due soon or overdue (1 overdue)" in message["text"]
    assert str(keys["emergency"][0].pubkey()) in str(message["blocks"])
    assert str(keys["governance"][0].pubkey()) not in str(message["blocks"])


def test_rotation_schedule_follows_the_seed() -> None:
    start = datetime(2025, 8, 31, tzinfo=UTC)
    assert key_rotation.due_at("upgrade", start) == datetime(2026, 2, 28, tzinfo=UTC)
    assert key_rotation.due_at("governance", start) == datetime(2026, 8, 31, tzinfo=UTC)
    assert key_rotation.due_at("emergency", start) == datetime(2025, 11, 30, tzinfo=UTC)


def test_authority_messages_cannot_be_replayed_as_upgrades() -> None:
    from core.approval import ApprovalSubject

    common = {
        "governance": "G", "proposal": "7", "program": "P", "sha256": "ab" * 32,
        "cluster": "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d",
    }  # fmt: skip
    upgrade = ApprovalSubject(buffer="B", **common).message()
    change = key_rotation.AuthorityChangeSubject(buffer="", new_authority="N", **common).message()
    immutable = key_rotation.AuthorityChangeSubject(buffer="", **common).message()
    assert len({upgrade, change, immutable}) == 3
    assert "new-authority: N" in change and "change: make-immutable" in immutable


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_signed_cancel_during_the_timelock_keeps_the_authority(
    chain: DemoChain, block_names, records_db: Engine
) -> None:
    """The rotation waits out its timelock in the same veto pause as an upgrade."""
    name = f"{block_names['cluster_block']}-2of3-timelock"
    await MultisigPolicy(
        members=[str(m.pubkey()) for m in chain.members[:3]], threshold=2, timelock_seconds=30,
        min_timelock_seconds=0, backend="keypair",
    ).asave(name, overwrite=True)  # fmt: skip
    old = str(chain.authority.pubkey())
    new = Keypair()
    prefix = block_names["cluster_block"]
    await SolanaKeypair.from_keypair(new).asave(f"{prefix}-veto-new", overwrite=True)

    with SlackStub() as slack:
        await SlackChannel(
            bot_token=slack.token, channel="#ops", api_base_url=slack.base_url
        ).asave(f"{prefix}-veto-slack", overwrite=True)
        state, proposal = await run_with_signoffs(
            chain,
            chain.members[:2],
            str(new.pubkey()),
            cancel_by=chain.members[0],  # one who approved may still cancel
            new_authority_block=f"{prefix}-veto-new",
            slack_block=f"{prefix}-veto-slack",
            **{**block_names, "policy_block": name},
        )
    assert state.is_cancelled(), state.message
    # One thread: the proposal opens it, sign-offs, the timelock and the cancel reply in it.
    [head] = [m for m in slack.messages if "thread_ts" not in m]
    assert "authority" in head["text"].lower()
    replies = [m for m in slack.messages if m.get("thread_ts") == head["ts"]]
    assert len(replies) == len(slack.messages) - 1 >= 4
    assert "cancel" in replies[-1]["text"].lower()
    assert slack.updates and all(u["ts"] == head["ts"] for u in slack.updates)
    assert authority_of(chain) == old
    assert proposal is not None and proposal.status == "cancelled"
    cancels = [a for a in proposals.approvals(records_db, proposal.id)
               if a.decision == "cancel"]  # fmt: skip
    assert [(a.member, a.accepted) for a in cancels] == [(str(chain.members[0].pubkey()), True)]

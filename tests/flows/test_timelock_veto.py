"""The veto during the timelock: the run waits in a pause whose form says when the
upgrade executes, and any one member may cancel it there with a signed ``cancel``.

A real Prefect API, a real localnet (upgrade_manager holding the upgrade authority for
the onchain backend; a keypair authority for the keypair backend) and a records database.
Members' entries go through the Resume API, as the UI's form sends them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine

from core import approval
from domain.veto import countdown
from flows._signoff import approval_subject
from flows.upgrade import proposal_key, upgrade_program
from programs import loader
from programs.upgrade_manager.client import Proposal, ProposalStatus
from runbooks.console import pause_description, resume_with_input, sign_off, wait_for_pause
from runbooks.demo import (
    DemoChain,
    find_run,
    hand_buffer_to_governance,
    save_blocks,
    setup_governance,
    write_buffer,
)
from store.records import proposals
from tasks.records import proposal_by_key

TIMELOCK = 20  # long enough for a refused cancel and a second pause on a busy machine


@pytest.fixture(params=["onchain", "keypair"])
async def upgrade_setup(
    request: pytest.FixtureRequest, prefect_api: None, chain: DemoChain
) -> tuple[dict[str, str], str]:
    """Blocks with a TIMELOCK-second timelock, and a v2 buffer the upgrade may use."""
    backend = request.param
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    buffer = await write_buffer(chain, chain.binaries["v2"])
    if backend == "onchain":
        await setup_governance(chain, timelock_seconds=TIMELOCK)
        await hand_buffer_to_governance(chain, buffer)
    names = await save_blocks(chain, prefix=prefix, timelock_seconds=TIMELOCK, backend=backend)
    return names, str(buffer)


def programdata_hash(chain: DemoChain) -> str:
    found = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert found is not None
    return loader.programdata_hash(bytes(found.data))


def signed(member: Keypair, proposal: proposals.ProposalRecord, action: str) -> dict[str, str]:
    message = approval_subject(proposal).message(action)  # type: ignore[arg-type]
    return {"member": str(member.pubkey()), "signature": str(approval.sign(member, message))}


class Run:
    """The upgrade flow running in this process, driven through the Prefect API."""

    def __init__(self, chain: DemoChain, names: dict[str, str], buffer: str) -> None:
        self.chain, self.names, self.buffer = chain, names, buffer
        self.last_key: str | None = None

    async def start(self) -> None:
        tag = f"test-{uuid.uuid4().hex[:12]}"
        with tags(tag):
            self.task = asyncio.create_task(
                upgrade_program(
                    program_id=str(self.chain.program_id),
                    buffer=self.buffer,
                    description="veto test upgrade",
                    proposer="tester",
                    **self.names,
                    return_state=True,
                )
            )
        self.run_id = await find_run(tag)
        self.key = proposal_key(
            "localnet", str(self.chain.program_id), self.buffer, str(self.run_id)
        )

    @property
    def proposal(self) -> proposals.ProposalRecord:
        found = proposal_by_key(self.key)
        assert found is not None
        return found

    async def approve(self, *members: Keypair) -> None:
        async with get_client() as client:
            await wait_for_pause(client, self.run_id)
            for m in members:
                entry = {**signed(m, self.proposal, "approve"), "decision": "approve"}
                self.last_key = await sign_off(client, self.run_id, entry, after_key=self.last_key)

    async def timelock_form(self) -> tuple[str, str]:
        """Wait for the next timelock pause; its key and the markdown its form shows."""
        async with get_client() as client:
            run = await wait_for_pause(client, self.run_id, not_key=self.last_key)
            assert run.state is not None
            key = run.state.state_details.pause_key or ""
            assert key.startswith(f"timelock-{self.proposal.id}-"), key
            self.last_key = key
            return key, await pause_description(client, self.run_id, key)

    async def submit(self, entry: dict[str, Any]) -> None:
        async with get_client() as client:
            await resume_with_input(client, self.run_id, entry)

    async def end(self) -> Any:
        return await asyncio.wait_for(self.task, timeout=120)


async def test_a_signed_cancel_during_the_timelock_stops_the_upgrade(
    chain: DemoChain, upgrade_setup: tuple[dict[str, str], str], records_db: Engine
) -> None:
    names, buffer = upgrade_setup
    m = chain.members
    v1_hash = programdata_hash(chain)
    run = Run(chain, names, buffer)
    await run.start()
    await run.approve(m[0], m[1], m[2])

    _, form = await run.timelock_form()
    proposal = run.proposal
    assert proposal.timelock_ends_at is not None
    # The form says when the upgrade executes, how long until then, and what to sign.
    assert f"executes at {proposal.timelock_ends_at.strftime('%Y-%m-%d %H:%M:%S')} UTC" in form
    assert "**In " in form and " s** (as of " in form
    assert approval_subject(proposal).message("cancel") in form
    # The command signs the line itself: a member needs no records database.
    assert "runbooks sign --keypair ~/.config/solana/id.json --message" in form

    # m[0] approved, and may still cancel.
    await run.submit({**signed(m[0], proposal, "cancel"), "comment": "wrong buffer"})
    state = await run.end()
    assert state.is_cancelled(), state
    assert "cancelled by" in (state.message or "")

    proposal = run.proposal
    assert proposal.status == "cancelled"
    history = proposals.approvals(records_db, proposal.id)
    last = history[-1]
    assert (last.member, last.decision, last.accepted) == (str(m[0].pubkey()), "cancel", True)
    assert last.comment == "wrong buffer"
    assert programdata_hash(chain) == v1_hash  # not upgraded
    if proposal.backend == "onchain":
        assert proposal.onchain_address is not None
        found = chain.server.localnet.get_account(Pubkey.from_string(proposal.onchain_address))
        assert found is not None
        assert Proposal.decode(bytes(found.data)).status == ProposalStatus.CANCELLED


async def test_refused_cancels_are_recorded_and_the_upgrade_executes_after_the_timelock(
    chain: DemoChain, upgrade_setup: tuple[dict[str, str], str], records_db: Engine
) -> None:
    names, buffer = upgrade_setup
    m = chain.members
    v2_hash = loader.verifiable_hash(chain.binaries["v2"])
    run = Run(chain, names, buffer)
    await run.start()
    await run.approve(m[0], m[1], m[2])

    first_key, _ = await run.timelock_form()
    proposal = run.proposal
    await run.submit(signed(Keypair(), proposal, "cancel"))  # not a member
    second_key, form = await run.timelock_form()
    assert second_key != first_key
    assert "The last cancel was refused:** " in form and "not a member" in form
    # A member's signature over the approve message, not the cancel message.
    wrong = {**signed(m[3], proposal, "approve"), "comment": "oops"}
    await run.submit(wrong)
    # Nobody cancels: the run pauses again for the time left (if any is left on a busy
    # machine) and executes when the timelock ends.

    state = await run.end()
    assert state.is_completed(), state.message
    assert programdata_hash(chain) == v2_hash
    proposal = run.proposal
    assert proposal.status == "executed"
    refused = [a for a in proposals.approvals(records_db, proposal.id) if a.decision == "cancel"]
    assert [a.accepted for a in refused] == [False, False]
    assert "not a member" in (refused[0].reason or "")
    assert refused[1].member == str(m[3].pubkey())
    assert "cancel message" in (refused[1].reason or "")


def test_countdown() -> None:
    assert countdown(0) == "0 s"
    assert countdown(59.6) == "1 min 0 s"
    assert countdown(4 * 60 + 12) == "4 min 12 s"
    assert countdown(2 * 3600 + 5 * 60) == "2 h 5 min"
    assert countdown(3 * 86400 + 4 * 3600 + 59) == "3 d 4 h"

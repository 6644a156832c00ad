"""A long timelock suspends a deployment's run; resumed after the timelock, the run
restarts from the top and repeats nothing: one proposal, no new sign-off pauses, one
execution."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow_async
from sqlalchemy import Engine, func, select

from core import approval
from flows._signoff import approval_subject
from flows.upgrade import proposal_key, upgrade_program
from programs import loader
from runbooks.console import sign_off, wait_for_pause
from runbooks.demo import DemoChain
from store.models import Proposal
from store.records import audit, proposals
from tasks.records import proposal_by_key


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_long_timelock_suspends_and_a_resumed_run_repeats_nothing(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    v2_buffer: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The policy's 2 s timelock counts as "long" here, so the suspend path is taken.
    monkeypatch.setenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "0.5")
    parameters = {
        "program_id": str(chain.program_id),
        "buffer": v2_buffer,
        "description": "restartable upgrade",
        "proposer": "tester",
        **block_names,
    }
    deployment = await upgrade_program.ato_deployment(
        name=f"upgrade-{block_names['cluster_block']}", parameters=parameters
    )
    deployment_id = await deployment.apply()
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(deployment_id)
        first = asyncio.create_task(
            run_flow_async(upgrade_program, flow_run, parameters, return_type="state")
        )
        await wait_for_pause(client, flow_run.id)
        proposal = proposal_by_key(
            proposal_key("localnet", parameters["program_id"], v2_buffer, str(flow_run.id))
        )
        assert proposal is not None
        message = approval_subject(proposal).message()
        key = None
        for member in chain.members[:3]:
            key = await sign_off(
                client,
                flow_run.id,
                {"member": str(member.pubkey()), "signature": str(approval.sign(member, message))},
                after_key=key,
            )
        # Suspending ends the process's part of the run (a worker would exit here).
        with pytest.raises(Pause):
            await asyncio.wait_for(first, 60)
        state = (await client.read_flow_run(flow_run.id)).state
        assert state.is_paused() and state.state_details.pause_reschedule, state  # suspended
        assert loader.verifiable_hash(chain.binaries["v1"]) == _program_hash(chain)

        await asyncio.sleep(2.5)  # the timelock runs out while nothing runs
        await client.resume_flow_run(flow_run.id)
        resumed = await client.read_flow_run(flow_run.id)
        state = await asyncio.wait_for(
            run_flow_async(upgrade_program, resumed, parameters, return_type="state"), 60
        )
    assert state.is_completed(), state
    assert _program_hash(chain) == loader.verifiable_hash(chain.binaries["v2"])
    with records_db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Proposal)) == 1
    history = proposals.approvals(records_db, proposal.id)
    assert len(history) == 3 and all(a.accepted for a in history)
    events = [
        e.action for e in audit.audit_events(records_db, proposals.proposal_subject(proposal.id))
    ]
    assert events.count("proposal.created") == 1
    assert events.count("proposal.threshold_met") == 1
    assert proposals.get_execution(records_db, proposal.id).outcome == "upgraded"


def _program_hash(chain: DemoChain) -> str:
    account = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    return loader.programdata_hash(bytes(account.data))

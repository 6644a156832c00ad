"""On a deployment's run, a Squads proposal still Active after the inline limit suspends
the run instead of holding a worker while members take days to vote; resumed, the run
reads the Proposal afresh (here Approved, no time lock) and goes on. The Proposal and
Multisig accounts are the SDK's, written into the localnet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow_async
from solders.pubkey import Pubkey
from sqlalchemy import Engine

from blocks import MultisigPolicy, SolanaCluster
from flows._squads import wait_for_squads
from programs.squads import client as squads
from runbooks.demo import DemoChain
from store.records import proposals as proposals_records
from tasks import records
from tasks import squads as squads_tasks
from tasks.records import records_engine
from tests.squads_localnet import place_multisig

VOTE_ALL = int(squads.ALL_PERMISSIONS)


@flow(name="squads-wait-test", persist_result=False)
async def squads_wait(
    cluster_block: str, policy_block: str, proposal_id: int, multisig: str
) -> dict[str, Any]:
    """The wait as the three Squads runbooks run it, on its own."""
    cluster = await SolanaCluster.aload(cluster_block)
    policy = await MultisigPolicy.aload(policy_block)
    proposal = proposals_records.get_proposal(records_engine(), proposal_id)
    assert proposal is not None
    created = squads_tasks._created(Pubkey.from_string(multisig), 1, "", "")
    proposal, approved = await wait_for_squads(cluster, policy, proposal, created)
    return {"status": approved.status.kind, "threshold_met": proposal.threshold_met_at}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_pending_squads_proposal_suspends_a_deployments_run_and_resume_rereads_it(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "0.5")
    net = chain.server.localnet
    placed = place_multisig(net, [(m, VOTE_ALL) for m in chain.members[:3]])
    placed.put_proposal(1, "Active", net.unix_timestamp())
    policy = await MultisigPolicy.aload(block_names["policy_block"])
    policy.backend, policy.squads_multisig = "squads", str(placed.address)
    policy.squads_poll_seconds = 1
    await policy.asave(block_names["policy_block"], overwrite=True)
    proposal = records.record_proposal(
        key=f"squads-wait-{placed.address}",
        kind="upgrade",
        cluster="localnet",
        backend="squads",
        governance=str(placed.address),
        program_id=str(chain.program_id),
        buffer=str(Pubkey.default()),
        buffer_hash="ab" * 32,
        description="the wait",
        proposer="tester",
        members=[str(m.pubkey()) for m in chain.members[:3]],
        threshold=2,
        timelock_seconds=0,
    )
    parameters = {
        "cluster_block": block_names["cluster_block"],
        "policy_block": block_names["policy_block"],
        "proposal_id": proposal.id,
        "multisig": str(placed.address),
    }
    deployment = await squads_wait.ato_deployment(name="squads-wait", parameters=parameters)
    deployment_id = await deployment.apply()
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(deployment_id)
        with pytest.raises(Pause):
            await asyncio.wait_for(
                run_flow_async(squads_wait, flow_run, parameters, return_type="state"), 60
            )
        state = (await client.read_flow_run(flow_run.id)).state
        assert state is not None and state.is_paused() and state.state_details.pause_reschedule
        assert proposals_records.get_proposal(records_db, proposal.id).threshold_met_at is None

        # Members approve while nothing runs; the resumed run reads the Proposal afresh.
        approved_at = net.unix_timestamp()
        placed.put_proposal(
            1, "Approved", approved_at, approved=[m.pubkey() for m in chain.members[:2]]
        )
        await client.resume_flow_run(flow_run.id)
        resumed = await client.read_flow_run(flow_run.id)
        state = await asyncio.wait_for(
            run_flow_async(squads_wait, resumed, parameters, return_type="state"), 60
        )
    assert state.is_completed(), state
    result = await state.aresult()
    assert result["status"] == "Approved"
    assert int(result["threshold_met"].timestamp()) == approved_at

"""Flow fixtures: a localnet with demo_vault v1, the blocks the flows load, a records
database (SQLite and PostgreSQL), and a driver that signs off through the Resume API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from sqlalchemy import Engine

from flows.upgrade import proposal_key, upgrade_program
from runbooks.console import ConsoleError, sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run, save_blocks, start_demo_chain
from store.records import ProposalRecord
from tasks.records import proposal_by_key, records_engine

Answers = Callable[[ProposalRecord], list[dict[str, Any]]]


@pytest.fixture
def chain(demo_binaries: dict[str, bytes]) -> Iterator[DemoChain]:
    chain = start_demo_chain(binaries=demo_binaries)
    yield chain
    chain.server.stop()


@pytest.fixture
async def block_names(prefect_api: None, chain: DemoChain) -> dict[str, str]:
    return await save_blocks(chain, prefix=f"t-{uuid.uuid4().hex[:10]}", timelock_seconds=2)


@pytest.fixture
def records_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The records database the flows write to in this test (``DATABASE_URL``)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


@dataclass
class FlowOutcome:
    state: State
    run_id: uuid.UUID
    proposal: ProposalRecord | None


async def run_upgrade_flow(
    chain: DemoChain,
    names: dict[str, str],
    buffer: str,
    answers: Answers | None = None,
    **params: Any,
) -> FlowOutcome:
    """Run the upgrade flow; when it pauses, submit ``answers(proposal)`` one per pause."""
    tag = f"test-{uuid.uuid4().hex[:12]}"
    program_id = params.pop("program_id", str(chain.program_id))
    with tags(tag):
        flow_task = asyncio.create_task(
            upgrade_program(
                program_id=program_id,
                buffer=buffer,
                description=params.pop("description", "test upgrade"),
                proposer=params.pop("proposer", "tester"),
                **names,
                **params,
                return_state=True,
            )
        )
    run_id = await find_run(tag)
    key = proposal_key("localnet", program_id, buffer, str(run_id))
    if answers is not None:
        async with get_client() as client:
            try:
                await wait_for_pause(client, run_id)
            except ConsoleError:
                pass  # ended before asking for sign-offs; the state tells why
            else:
                proposal = proposal_by_key(key)
                assert proposal is not None
                after = None
                for answer in answers(proposal):
                    after = await sign_off(client, run_id, answer, after_key=after)
    state = await asyncio.wait_for(flow_task, timeout=120)
    return FlowOutcome(state=state, run_id=run_id, proposal=proposal_by_key(key))


@pytest.fixture
async def v2_buffer(chain: DemoChain) -> AsyncIterator[str]:
    from runbooks.demo import write_buffer

    yield str(await write_buffer(chain, chain.binaries["v2"]))

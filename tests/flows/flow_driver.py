"""Runs the upgrade flow in this process and signs it off through the Resume API, as a
member in the UI would (a helper module, not a conftest, so any test folder can import it
unambiguously)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State

from core.errors import ConsoleError
from flows.upgrade import proposal_key, upgrade_program
from runbooks.console import sign_off, wait_for_pause
from runbooks.demo import DemoChain, find_run
from store.records.proposals import ProposalRecord
from tasks.buffer import buffer_purpose, journaled_buffer
from tasks.records import proposal_by_key

Answers = Callable[[ProposalRecord], list[dict[str, Any]]]


@dataclass
class FlowOutcome:
    state: State
    run_id: uuid.UUID
    proposal: ProposalRecord | None


async def run_upgrade_flow(
    chain: DemoChain,
    names: dict[str, str],
    buffer: str | None,
    answers: Answers | None = None,
    **params: Any,
) -> FlowOutcome:
    """Run the upgrade flow; when it pauses, submit ``answers(proposal)`` one per pause.
    ``buffer`` None: the run writes it from ``program_file`` (in ``params``)."""
    tag = f"test-{uuid.uuid4().hex[:12]}"
    program_id = params.pop("program_id", str(chain.program_id))
    with tags(tag):
        flow_task = asyncio.create_task(
            upgrade_program(
                program_id=program_id,
                buffer=buffer or "",
                description=params.pop("description", "test upgrade"),
                proposer=params.pop("proposer", "tester"),
                **names,
                **params,
                return_state=True,
            )
        )
    run_id = await find_run(tag)
    sha256 = params.get("expected_sha256") or ""

    def key() -> str:
        written = buffer or journaled_buffer(
            buffer_purpose("localnet", program_id, sha256, str(run_id))
        )
        return proposal_key("localnet", program_id, written or "none", str(run_id))

    if answers is not None:
        async with get_client() as client:
            try:
                await wait_for_pause(client, run_id)
            except ConsoleError:
                pass  # ended before asking for sign-offs; the state tells why
            else:
                proposal = proposal_by_key(key())
                assert proposal is not None
                after = None
                for answer in answers(proposal):
                    after = await sign_off(client, run_id, answer, after_key=after)
    state = await asyncio.wait_for(flow_task, timeout=120)
    return FlowOutcome(state=state, run_id=run_id, proposal=proposal_by_key(key()))

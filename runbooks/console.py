"""What the Prefect UI does for an operator, through the same API calls.

The Resume form of a paused run posts to ``/api/flow_runs/{id}/resume`` with the form's
values as ``run_input``; the server validates them against the pause's schema. The
demo, the tests and scripts sign off through exactly that path.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from core.errors import ConsoleError


async def wait_for_pause(
    client: PrefectClient,
    flow_run_id: UUID,
    *,
    not_key: str | None = None,
    timeout_seconds: float = 60.0,
) -> FlowRun:
    """Wait until the run is paused at a pause other than ``not_key``."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        run = await client.read_flow_run(flow_run_id)
        state = run.state
        if state is not None and state.is_paused():
            key = state.state_details.pause_key
            if key != not_key:
                return run
        if state is not None and state.is_final():
            raise ConsoleError(f"flow run {flow_run_id} ended {state.type.value}: {state.message}")
        if time.monotonic() > deadline:
            raise ConsoleError(f"flow run {flow_run_id} did not pause within {timeout_seconds} s")
        await asyncio.sleep(0.25)


async def resume_with_input(
    client: PrefectClient,
    flow_run_id: UUID,
    run_input: dict[str, Any],
    timeout_seconds: float = 30.0,
) -> None:
    """Submit the Resume form; retried while the pause's schema is not saved yet."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = await client.resume_flow_run(flow_run_id, run_input=run_input)
        if result.status == SetStateStatus.ACCEPT:
            return
        reason = getattr(result.details, "reason", "") or ""
        if time.monotonic() > deadline:
            raise ConsoleError(f"resume of {flow_run_id} refused: {reason}")
        # "Run input schema not found": the flow has not finished pausing yet.
        await asyncio.sleep(0.25)


async def sign_off(
    client: PrefectClient, flow_run_id: UUID, run_input: dict[str, Any], *, after_key: str | None
) -> str:
    """Wait for the next sign-off pause after ``after_key``, answer it; returns its key."""
    run = await wait_for_pause(client, flow_run_id, not_key=after_key)
    key = run.state.state_details.pause_key if run.state else None
    await resume_with_input(client, flow_run_id, run_input)
    return key or ""


async def pause_description(
    client: PrefectClient, flow_run_id: UUID, pause_key: str, timeout_seconds: float = 30.0
) -> str:
    """The markdown the Resume dialog shows for the pause at ``pause_key``; it is saved
    just after the run pauses, so it is waited for."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            raw = await client.read_flow_run_input(flow_run_id, f"paused-{pause_key}-description")
        except (ObjectNotFound, PrefectHTTPStatusError) as exc:
            # This endpoint answers a missing input with a plain 404, not ObjectNotFound.
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code != 404:
                raise
            if time.monotonic() > deadline:
                raise ConsoleError(
                    f"the pause {pause_key} of run {flow_run_id} shows no form after "
                    f"{timeout_seconds:.0f} s"
                ) from None
            await asyncio.sleep(0.25)
            continue
        text = str(raw)
        return json.loads(text) if text.startswith('"') else text

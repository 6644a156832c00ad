"""One pause for input that survives a retried state change.

``pause_flow_run`` proposes the Paused state, then saves the form and waits. When the
server took the Paused state but its answer was lost (a busy server's 503, a dropped
connection), Prefect's client retries the same transition and the server refuses it —
"This run has already made this state transition" — as a ``Pause`` exception, although
the run *is* paused at exactly this key. That refusal is not a failure: the form is
saved and the run waits for its answer as ``pause_flow_run`` would have.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar
from uuid import UUID

from prefect import get_client
from prefect.exceptions import FlowPauseTimeout, Pause
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_base_key
from prefect.runtime import flow_run

from core.settings import settings

Form = TypeVar("Form", bound=RunInput)


async def pause_for_input(
    form: type[Form], *, timeout: int, poll_interval: float, key: str
) -> Form:
    """Pause at ``key`` until someone submits ``form``; FlowPauseTimeout after ``timeout``."""
    try:
        return await pause_flow_run(
            wait_for_input=form, timeout=timeout, poll_interval=poll_interval, key=key
        )
    except Pause as refused:
        state = refused.state
        if state is None or not state.is_paused() or state.state_details.pause_key != key:
            raise
    return await _wait_for_answer(form, timeout=timeout, poll_interval=poll_interval, key=key)


async def _wait_for_answer(
    form: type[Form], *, timeout: int, poll_interval: float, key: str
) -> Form:
    current = flow_run.get_id()
    assert current is not None  # only a flow run pauses
    keyset = keyset_from_base_key(f"paused-{key}")
    await form.asave(keyset)  # the schema and text the Resume dialog shows
    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            run = await client.read_flow_run(UUID(current))
            if run.state is not None and run.state.is_running():
                return await form.aload(keyset)
            await asyncio.sleep(poll_interval)
    raise FlowPauseTimeout(f"flow run {current} was not resumed at {key} within {timeout} s")


def inline_timelock_limit_seconds() -> float:
    """Waits longer than this suspend the run (deployments only) instead of holding a
    worker: ``RUNBOOKS_INLINE_TIMELOCK_SECONDS``, else 15 minutes."""
    return settings().inline_timelock_seconds

"""A pause whose Paused state the server took but whose answer was lost.

Prefect's client retries a state change when the server's answer does not arrive (a busy
SQLite server answers 503 "database is locked" after committing); the retry is refused —
"This run has already made this state transition" — although the run is paused at that
very key. Here each pause's transition is sent twice, the second time as the retry, to a
real Prefect API.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect import flow, tags
from prefect.client.base import PrefectHttpxAsyncClient
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from flows._pause import pause_for_input
from runbooks.console import resume_with_input, wait_for_pause
from runbooks.demo import find_run


class Note(RunInput):
    text: str


@pytest.fixture
def answers_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each request that pauses a run reaches the server twice with the same body: the
    first is committed and its answer lost, the second is the client's retry."""
    real_send = PrefectHttpxAsyncClient.send

    async def send_twice(
        self: PrefectHttpxAsyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        if request.url.path.endswith("/set_state") and b'"PAUSED"' in request.content:
            await real_send(self, request, *args, **kwargs)
        return await real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(PrefectHttpxAsyncClient, "send", send_twice)


@flow(persist_result=False)
async def pauses_once(key: str, use_prefect_pause: bool) -> str:
    if use_prefect_pause:
        try:
            entry = await pause_flow_run(wait_for_input=Note, timeout=60, key=key)
        except Pause as refused:
            return f"refused: {refused}"
        return entry.text
    return (await pause_for_input(Note, timeout=60, poll_interval=0.5, key=key)).text


async def start(use_prefect_pause: bool) -> tuple[asyncio.Task[str], UUID]:
    tag = f"pause-{uuid.uuid4().hex[:10]}"
    with tags(tag):
        task = asyncio.create_task(
            pauses_once(key="signoff-1-1", use_prefect_pause=use_prefect_pause)
        )
    return task, await find_run(tag)


async def test_prefect_alone_fails_the_run_on_the_refused_retry(
    prefect_api: None, answers_lost: None
) -> None:
    task, _ = await start(use_prefect_pause=True)
    result = await asyncio.wait_for(task, timeout=60)
    assert result.startswith("refused:") and "already made this state transition" in result


async def test_the_runbooks_pause_waits_for_the_answer_instead(
    prefect_api: None, answers_lost: None
) -> None:
    task, run_id = await start(use_prefect_pause=False)
    async with get_client() as client:
        run = await wait_for_pause(client, run_id)
        assert run.state is not None and run.state.state_details.pause_key == "signoff-1-1"
        # The form is saved, so the Resume dialog (and this call) can answer it.
        await resume_with_input(client, run_id, {"text": "approved by alice"})
    assert await asyncio.wait_for(task, timeout=60) == "approved by alice"

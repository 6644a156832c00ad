"""The Slack button handler: Slack's v0 request signature, the payload, and resuming a
paused run on a real Prefect API — and nothing else."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from prefect import flow, tags
from prefect.client.orchestration import get_client
from slack_sdk.signature import SignatureVerifier

from runbooks import slack_handler
from runbooks.confirmations import wait_for_confirmation
from runbooks.console import wait_for_pause
from runbooks.demo import find_run
from runbooks.slack_handler import (
    SlackActionServer,
    SlackRequestRejected,
    encode_action_value,
    parse_action,
    signature,
    verify_request,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def payload_body(run_id: str, key: str, decision: str = "acknowledge", **extra: Any) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ONCALL", "username": "alice", "team_id": "T0OPS"},
        "team": {"id": "T0OPS"},
        "actions": [
            {
                "action_id": f"runbooks-confirm-{decision}",
                "value": encode_action_value(run_id, key, decision),
                "type": "button",
            }
        ],
        **extra,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature(secret, stamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_signature_is_slacks_v0_scheme() -> None:
    # slack_sdk's own verifier is the independent reference.
    body = "token=xyz&team_id=T1&payload=%7B%7D"
    reference = SignatureVerifier(SECRET)
    assert signature(SECRET, "1531420618", body.encode()) == reference.generate_signature(
        timestamp="1531420618", body=body
    )
    headers = signed(body.encode())
    assert reference.is_valid_request(body, headers)
    verify_request(SECRET, headers, body.encode())


# Headers are built when the test runs: signed at collection, they would go stale.
@pytest.mark.parametrize(
    ("make_headers", "body", "reason"),
    [
        (lambda: {}, b"payload=x", "unsigned"),
        (lambda: {"X-Slack-Request-Timestamp": "1"}, b"payload=x", "unsigned"),
        (lambda: signed(b"payload=x", secret="another secret"), b"payload=x", "bad signature"),
        (lambda: signed(b"payload=x"), b"payload=y", "bad signature"),  # body altered
        (lambda: signed(b"payload=x", at=time.time() - 301), b"payload=x", "stale"),  # replay
        (
            lambda: {**signed(b"payload=x"), "X-Slack-Request-Timestamp": "soon"},
            b"payload=x",
            "malformed",
        ),
    ],
)
def test_bad_requests_are_refused(
    make_headers: Callable[[], dict[str, str]], body: bytes, reason: str
) -> None:
    with pytest.raises(SlackRequestRejected, match=reason) as refused:
        verify_request(SECRET, make_headers(), body)
    assert refused.value.status == 401


def test_without_a_signing_secret_everything_is_refused() -> None:
    body = b"payload=x"
    with pytest.raises(SlackRequestRejected, match="no signing secret"):
        verify_request("", signed(body, secret=""), body)


def test_payload_parsing() -> None:
    run_id = str(uuid.uuid4())
    action = parse_action(payload_body(run_id, "ack-1"))
    assert action is not None and str(action.run_id) == run_id and action.key == "ack-1"
    assert action.run_input()["by"] == "slack:U0ONCALL (alice)"
    # Someone else's button, or another kind of interaction: not ours, nothing to do.
    other = urlencode({"payload": json.dumps({"type": "view_submission"})}).encode()
    assert parse_action(other) is None
    with pytest.raises(SlackRequestRejected) as bad:
        parse_action(b"payload=%7Bnot-json")
    assert bad.value.status == 400


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@flow(name="confirmation-probe", persist_result=False)
async def confirmation_probe() -> dict[str, Any] | None:
    answer = await wait_for_confirmation(
        key="ack-probe", description="Acknowledge the probe", timeout_seconds=60, poll_interval=1
    )
    return None if answer is None else answer.model_dump(exclude={"metadata"})


async def test_a_signed_click_resumes_the_paused_run_and_nothing_else_does(
    prefect_api: None,
) -> None:
    tag = f"probe-{uuid.uuid4().hex[:10]}"
    with tags(tag):
        run = asyncio.create_task(confirmation_probe(return_state=True))
    run_id = await find_run(tag)
    async with get_client() as client:
        await wait_for_pause(client, run_id)

    async def still_paused() -> bool:
        async with get_client() as client:
            state = (await client.read_flow_run(run_id)).state
        return state is not None and state.is_paused()

    good = payload_body(str(run_id), "ack-probe")
    with SlackActionServer(SECRET) as server:
        # Badly signed, unsigned, or signed by another app: 401, the run stays paused.
        for headers in (
            {},
            signed(good, secret="not ours"),
            {**signed(good), "X-Slack-Signature": "v0=00"},
        ):
            status, reply = await asyncio.to_thread(post, server.url, good, headers)
            assert status == 401 and reply["ok"] is False
        # Genuine, but for a pause that is not pending (a stale message): nothing changes.
        stale = payload_body(str(run_id), "ack-someday")
        status, reply = await asyncio.to_thread(post, server.url, stale, signed(stale))
        assert status == 200 and "nothing changed" in reply["text"]
        unknown = payload_body(str(uuid.uuid4()), "ack-probe")
        status, reply = await asyncio.to_thread(post, server.url, unknown, signed(unknown))
        assert status == 200 and "nothing changed" in reply["text"]
        await asyncio.sleep(1.5)  # longer than the run's poll interval
        assert await still_paused()

        # The genuine click: the run resumes with the Slack user's identity.
        status, reply = await asyncio.to_thread(post, server.url, good, signed(good))
        assert status == 200 and reply["text"] == "Acknowledged by <@U0ONCALL>."
    state = await asyncio.wait_for(run, timeout=60)
    assert state.is_completed(), state.message
    answer = await state.aresult()
    assert answer["decision"] == "acknowledge"
    assert answer["by"] == "slack:U0ONCALL (alice)" and answer["slack_user_id"] == "U0ONCALL"


def test_handle_without_prefect() -> None:
    """``handle`` decides before anything is resumed: a refused request never calls it."""
    calls: list[Any] = []
    body = payload_body(str(uuid.uuid4()), "ack-1")
    status, _ = slack_handler.handle(SECRET, {}, body, resume=calls.append)
    assert status == 401 and calls == []
    status, reply = slack_handler.handle(SECRET, signed(body), body, resume=lambda a: "done")
    assert status == 200 and reply["text"] == "done"

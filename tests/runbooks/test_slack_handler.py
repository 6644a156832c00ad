"""The Slack button handler: Slack's v0 request signature, the payload, and resuming a
paused run on a real Prefect API — and nothing else."""

from __future__ import annotations

import asyncio
import json
import threading
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

from core.errors import SlackRequestRejected
from domain.messages import encode_action_value
from flows._confirmations import wait_for_confirmation
from runbooks import slack_handler
from runbooks.console import wait_for_pause
from runbooks.demo import find_run
from runbooks.slack_handler import (
    SlackActionServer,
    parse_action,
    signature,
    verify_request,
)
from tests.stand_ins.slack_stub import SlackStub

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def payload_body(
    run_id: str,
    key: str,
    decision: str = "acknowledge",
    value: str | None = None,
    user: str = "U0ONCALL",
    **extra: Any,
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "team_id": "T0OPS"},
        "team": {"id": "T0OPS"},
        "actions": [
            {
                "action_id": f"runbooks-confirm-{decision}",
                "value": value or encode_action_value(run_id, key, decision),
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
        verify_request("", signed(body, secret="any secret"), body)


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

    good = payload_body(str(run_id), "ack-probe", response_url="")

    def told() -> list[str]:
        return [r["text"] for r in slack.responses]

    async def outcome(count: int) -> str:
        deadline = time.monotonic() + 20
        while len(slack.responses) < count:
            assert time.monotonic() < deadline, told()
            await asyncio.sleep(0.1)
        return told()[count - 1]

    with SlackStub() as slack, SlackActionServer(SECRET, members={"U0ONCALL"}) as server:
        good = payload_body(str(run_id), "ack-probe", response_url=slack.response_url())
        # Badly signed, unsigned, or signed by another app: 401, the run stays paused.
        for headers in (
            {},
            signed(good, secret="not ours"),
            {**signed(good), "X-Slack-Signature": "v0=00"},
        ):
            status, reply = await asyncio.to_thread(post, server.url, good, headers)
            assert status == 401 and reply["ok"] is False
        # Genuine, but for a pause that is not pending (a stale message): nothing changes.
        url = slack.response_url()
        stale = payload_body(str(run_id), "ack-someday", response_url=url)
        status, reply = await asyncio.to_thread(post, server.url, stale, signed(stale))
        assert status == 200 and "received" in reply["text"]
        assert "nothing changed" in await outcome(1)
        unknown = payload_body(str(uuid.uuid4()), "ack-probe", response_url=url)
        status, reply = await asyncio.to_thread(post, server.url, unknown, signed(unknown))
        assert status == 200 and "nothing changed" in await outcome(2)
        # A workspace user who is not a member: refused at once, nothing queued.
        stranger = payload_body(str(run_id), "ack-probe", user="U0STRANGER", response_url=url)
        status, reply = await asyncio.to_thread(post, server.url, stranger, signed(stranger))
        assert status == 200 and "Only multisig members" in reply["text"]
        await asyncio.sleep(1.5)  # longer than the run's poll interval
        assert await still_paused() and len(slack.responses) == 2

        # The genuine click: the run resumes with the Slack user's identity.
        status, reply = await asyncio.to_thread(post, server.url, good, signed(good))
        assert status == 200 and "received" in reply["text"]
        assert await outcome(3) == "Acknowledged by <@U0ONCALL>."
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
    members = {"U0ONCALL"}
    status, reply = slack_handler.handle(
        SECRET, signed(body), body, resume=lambda a: "done", members=members
    )
    assert status == 200 and reply["text"] == "done"


def test_only_members_may_press() -> None:
    """A click by anyone but a member is refused (ephemeral) and resumes nothing: the
    button's own allow-list first, else the handler's members, else nobody."""
    calls: list[Any] = []
    run = str(uuid.uuid4())
    body = payload_body(run, "ack-1")  # clicked by U0ONCALL
    for members in (set(), {"U0ALICE", "U0BOB"}):
        status, reply = slack_handler.handle(
            SECRET, signed(body), body, resume=calls.append, members=members
        )
        assert status == 200 and reply["response_type"] == "ephemeral"
        assert "Only multisig members" in reply["text"] and "Nothing changed" in reply["text"]
    assert (
        "slack_user_id" in slack_handler.handle(SECRET, signed(body), body, calls.append)[1]["text"]
    )  # with no member list at all, the refusal says how to configure one
    # The button's allow-list overrides the handler's list, both ways.
    allowed = payload_body(
        run, "ack-1", value=encode_action_value(run, "ack-1", "acknowledge", ["U0BOB"])
    )
    status, reply = slack_handler.handle(
        SECRET, signed(allowed), allowed, resume=calls.append, members={"U0ONCALL"}
    )
    assert "Only multisig members" in reply["text"]
    assert calls == []
    mine = payload_body(
        run, "ack-1", value=encode_action_value(run, "ack-1", "acknowledge", ["U0ONCALL"])
    )
    status, reply = slack_handler.handle(SECRET, signed(mine), mine, resume=lambda a: "resumed")
    assert reply["text"] == "resumed"


def test_the_answer_does_not_wait_for_the_resume() -> None:
    """Slack gets its HTTP 200 at once; the resume runs after, and its outcome goes to the
    click's response_url."""
    release = threading.Event()
    resumed: list[str] = []

    def slow_resume(action: slack_handler.SlackAction) -> str:
        release.wait(30)  # a Prefect API that takes its time
        resumed.append(action.key)
        return "Acknowledged by <@U0ONCALL>."

    with (
        SlackStub() as slack,
        SlackActionServer(SECRET, resume=slow_resume, members={"U0ONCALL"}) as server,
    ):
        body = payload_body(str(uuid.uuid4()), "ack-1", response_url=slack.response_url("ack-1"))
        # The resume is held until `release`: an answer now is one that did not wait.
        status, reply = post(server.url, body, signed(body))
        assert status == 200 and "received" in reply["text"]
        assert resumed == [] and slack.responses == []
        release.set()
        deadline = time.monotonic() + 10
        while not slack.responses:
            assert time.monotonic() < deadline, "the outcome never reached response_url"
            time.sleep(0.05)
    assert resumed == ["ack-1"]
    [told] = slack.responses
    assert told["path"] == "/response/ack-1" and told["text"] == "Acknowledged by <@U0ONCALL>."
    assert told["response_type"] == "ephemeral" and told["replace_original"] is False

"""Block Kit messages for every runbook event, posted through slack_sdk to the stand-in
Slack Web API; Slack failing never fails the caller."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient

from blocks import SlackChannel
from domain import messages
from runbooks.slack_handler import ACTION_PREFIX, parse_action
from store.records import proposals, slack_threads
from tasks.notify import notify, open_thread, update_thread
from tasks.records import records_engine
from tests.stand_ins.slack_stub import SlackStub

RUN = str(uuid.uuid4())


def every_message() -> dict[str, tuple[str, list[dict[str, Any]]]]:
    findings = [
        {"check": "hash", "subject": f"p{i}", "level": "critical", "message": "x" * 400}
        for i in range(20)
    ]
    return {
        "proposal_created": messages.proposal_created(
            proposal_id=1, program="P", buffer="B", sha256="ab" * 32, description="v2",
            proposer="alice", threshold=3, members=5, approval_message="solana-runbooks v1; ...",
            run_url="http://127.0.0.1:4200/runs/flow-run/x",
        ),
        "approval_progress": messages.approval_progress(
            proposal_id=1, member="M", accepted=True, reason=None, have=1, need=3
        ),
        "timelock_started": messages.timelock_started(proposal_id=1, executes_after="soon"),
        "timelock_expiring": messages.timelock_expiring(
            proposal_id=1, program="P", ends_at="2025-06-01T00:00:00+00:00"
        ),
        "executed": messages.executed(
            proposal_id=1, program="P", signature="S", new_hash="ab" * 32, outcome="upgraded"
        ),
        "failed": messages.failed(what="Backup", error="disk full", run_url=None),
        "health_alert": messages.health_alert(
            level="critical", cluster="mainnet-beta", findings=findings, run_url=None,
            ack=(RUN, "ack-health-7"),
        ),
        "rotation_reminder": messages.rotation_reminder(
            keys=[{"label": "upgrade key", "pubkey": "K", "role": "upgrade",
                   "due_at": "2025-07-01", "days_left": -3, "status": "overdue"}],
            run_url=None,
        ),
        "authority_change_proposed": messages.authority_change_proposed(
            proposal_id=2, program="P", current="A", new_authority=None, threshold=5, members=5,
            approval_message="solana-runbooks v1; ...", run_url=None,
        ),
        "squads_proposal_created": messages.squads_proposal_created(
            proposal_id=1, program="P", buffer="B", sha256="ab" * 32, description="v" * 1000,
            proposer="alice", multisig="M", transaction_index=4, proposal_address="Q",
            threshold=2, voters=3, time_lock=3600, app_link="https://app.squads.so/squads/M/transactions/4",
            approve_command="runbooks squads approve --multisig M --transaction-index 4",
            run_url=None,
        ),
        "confirmation_request": messages.confirmation_request(
            title="Release the kill switch on P?", text="Engaged since ...", run_id=RUN,
            key="release-1", choices=[("confirm", "Release"), ("decline", "Keep it on")],
            run_url=None, confirm_text="Runbooks may write to P again.",
        ),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(every_message()))
def test_messages_stay_within_block_kit_limits(name: str) -> None:
    text, blocks = every_message()[name]
    assert text and len(blocks) <= 50
    for block in blocks:
        assert block["type"] in ("header", "section", "actions")
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "actions":
            for element in block["elements"]:
                assert element["type"] == "button" and len(element["text"]["text"]) <= 75
                assert len(element.get("value", "")) <= 2000
                assert len(element.get("action_id", "")) <= 255


def test_buttons_carry_what_the_handler_needs() -> None:
    _, blocks = every_message()["confirmation_request"]
    [actions] = [b for b in blocks if b["type"] == "actions"]
    decisions = []
    for button in actions["elements"]:
        assert button["action_id"].startswith(ACTION_PREFIX)
        payload = {
            "type": "block_actions",
            "user": {"id": "U1"},
            "actions": [{"action_id": button["action_id"], "value": button["value"]}],
        }
        action = parse_action(urlencode({"payload": json.dumps(payload)}).encode())
        assert action is not None and str(action.run_id) == RUN and action.key == "release-1"
        decisions.append(action.decision)
    assert decisions == ["confirm", "decline"]
    assert "confirm" in actions["elements"][0]  # a dialog before releasing a kill switch


async def test_notify_posts_block_kit_and_survives_slack_errors(prefect_api: None) -> None:
    with SlackStub() as slack:
        await SlackChannel(
            bot_token=slack.token, channel="#ops", api_base_url=slack.base_url
        ).asave("msg-test-slack", overwrite=True)
        text, blocks = every_message()["health_alert"]
        assert await notify(text, blocks, slack_block="msg-test-slack") is True
        [posted] = slack.messages
        assert posted["channel"] == "#ops" and posted["blocks"] == blocks
        # Slack answers an error (a revoked token): retried, then a warning, never raised.
        revoked = SlackChannel(
            bot_token="xoxb-revoked", channel="#ops", api_base_url=slack.base_url
        )
        await revoked.asave("msg-test-bad", overwrite=True)
        assert await notify("x", None, slack_block="msg-test-bad") is False
        assert len(slack.messages) == 1
    # No block at all: logged only.
    assert await notify("x", None, slack_block=None) is False


def test_the_stand_in_answers_like_slack() -> None:
    with SlackStub(channels=("#ops",)) as slack:
        ok = slack.answer("chat.postMessage", slack.token, {"channel": "#ops", "text": "hi"})
        assert ok["ok"] is True and set(ok) == {"ok", "channel", "ts", "message"}
        assert slack.answer("chat.postMessage", "", {"channel": "#ops", "text": "x"}) == {
            "ok": False, "error": "not_authed",
        }  # fmt: skip
        assert (
            slack.answer("chat.postMessage", slack.token, {"channel": "#x", "text": "x"})["error"]
            == "channel_not_found"
        )
        assert slack.answer("chat.postMessage", slack.token, {"channel": "#ops"})["error"] == (
            "no_text"
        )
        assert slack.answer("chat.delete", slack.token, {})["error"] == "unknown_method"


def test_the_stand_in_threads_and_updates_like_slack() -> None:
    """slack_sdk's own client against the stand-in: thread_ts replies and chat.update."""
    with SlackStub(channels=("#ops",)) as slack:
        client = WebClient(token=slack.token, base_url=slack.base_url)
        head = client.chat_postMessage(channel="#ops", text="proposal 1")
        assert head["channel"] == SlackStub.CHANNEL_ID
        reply = client.chat_postMessage(channel=head["channel"], thread_ts=head["ts"], text="r")
        assert reply["message"]["thread_ts"] == head["ts"] and reply["ts"] != head["ts"]
        assert slack.thread(head["ts"]) == [slack.messages[1]]
        updated = client.chat_update(
            channel=head["channel"], ts=head["ts"], text="proposal 1: 1 of 3",
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "1 of 3"}}],
        )  # fmt: skip
        assert set(updated.data) == {"ok", "channel", "ts", "text", "message"}
        assert updated["ts"] == head["ts"] and slack.messages[0]["text"] == "proposal 1: 1 of 3"
        assert len(slack.messages) == 2  # an update posts nothing new
        errors = {
            "message_not_found": {"channel": SlackStub.CHANNEL_ID, "ts": "1.0", "text": "x"},
            # chat.update takes the channel id postMessage answered with, not a #name.
            "channel_not_found": {"channel": "#ops", "ts": head["ts"], "text": "x"},
        }
        for error, args in errors.items():
            assert slack.answer("chat.update", slack.token, args)["error"] == error
        missing = {"channel": "#ops", "thread_ts": "9.9", "text": "x"}
        assert slack.answer("chat.postMessage", slack.token, missing)["error"] == (
            "thread_not_found"
        )


async def test_one_thread_per_proposal(
    prefect_api: None, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first message is posted once (a second open finds it recorded), later events
    reply in its thread, and its status block is updated in place; Slack being down
    changes none of the run's outcome."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'records.db'}")
    proposal = proposals.record_proposal(
        records_engine(), key="slack-thread-test", kind="upgrade", cluster="localnet",
        backend="keypair", governance="G", program_id="P", buffer="B", buffer_hash="ab" * 32,
        description="v2", proposer="alice", members=["K1", "K2", "K3"], threshold=2,
        timelock_seconds=0,
    )  # fmt: skip
    status = messages.signoff_status(
        have=0, need=2, signed=[], missing=[("Alice (K1)", "U0ALICE"), ("Bob (K2)", None)]
    )
    text, blocks = messages.proposal_created(
        proposal_id=proposal.id, program="P", buffer="B", sha256="ab" * 32,
        description="v2", proposer="alice", threshold=2, members=3,
        approval_message="solana-runbooks v1; ...", run_url=None, number="4", status=status,
    )  # fmt: skip
    assert "Upgrade proposal 4" in text
    assert "Waiting for: <@U0ALICE> Alice (K1), Bob (K2)" in status["text"]["text"]
    with SlackStub() as slack:
        await SlackChannel(
            bot_token=slack.token, channel="#ops", api_base_url=slack.base_url
        ).asave("thread-test-slack", overwrite=True)
        assert await open_thread(proposal.id, text, blocks, "thread-test-slack")
        assert await open_thread(proposal.id, text, blocks, "thread-test-slack")  # a restart
        [head] = slack.messages
        assert head["channel"] == "#ops" and "thread_ts" not in head
        thread = slack_threads.get_slack_thread(records_engine(), proposal.id)
        assert thread is not None and (thread.channel, thread.ts) == (
            SlackStub.CHANNEL_ID, head["ts"],
        )  # fmt: skip
        progress = messages.approval_progress(
            proposal_id=4, member="Alice (K1)", accepted=True, reason=None, have=1, need=2,
            waiting_for=[("Bob (K2)", "U0BOB")],
        )  # fmt: skip
        assert await notify(*progress, "thread-test-slack", proposal_id=proposal.id)
        assert "<@U0BOB> Bob (K2)" in slack.messages[1]["blocks"][0]["text"]["text"]
        after = messages.signoff_status(
            have=1, need=2, signed=["Alice (K1)"], missing=[("Bob (K2)", "U0BOB")]
        )
        assert await update_thread(proposal.id, after, "thread-test-slack")
        assert [m["ts"] for m in slack.thread(head["ts"])] == [slack.messages[1]["ts"]]
        [update] = slack.updates
        assert update["ts"] == head["ts"] and update["channel"] == SlackStub.CHANNEL_ID
        # Only the status block changed, in its place; the rest is the message as posted.
        assert head["blocks"] == [after if b == status else b for b in blocks]
        assert "*Sign-offs: 1 of 2*" in head["blocks"][2]["text"]["text"]
        # Without a thread (another proposal), a message goes to the channel as before.
        assert await notify("elsewhere", None, "thread-test-slack", proposal_id=proposal.id + 1)
        assert "thread_ts" not in slack.messages[-1]
    # Slack gone: nothing raised, nothing recorded anew.
    assert await update_thread(proposal.id, after, "thread-test-slack") is False
    assert await notify("x", None, "thread-test-slack", proposal_id=proposal.id) is False

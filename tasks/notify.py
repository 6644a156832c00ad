"""Slack notifications. Slack being down never blocks or fails a runbook.

A proposal gets one thread: ``open_thread`` posts its first message once and records
its ``ts`` (records table ``slack_threads``); ``notify(..., proposal_id=...)`` then
replies in that thread (``thread_ts``), and ``update_thread`` rewrites the first
message's status lines (``chat.update``) as sign-offs arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

from prefect import get_run_logger, task
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse

from blocks.slack import SlackChannel
from domain.messages import STATUS_BLOCK_ID
from store.records import slack_threads as slack_threads_records
from tasks.records import current_run_id, records_engine

# Each call is tried at most three times (slack_sdk's retry handlers, with backoff).
RETRIES = 2


def retry_handlers() -> list[RetryHandler]:
    """Retry what may pass: a dropped or timed-out connection, a rate limit (after its
    Retry-After), a 500/503. An answer that Slack refused (bad token, unknown channel) is
    final."""
    return [
        ConnectionErrorRetryHandler(
            max_retry_count=RETRIES,
            error_types=[URLError, ConnectionError, RemoteDisconnected, TimeoutError],
        ),
        RateLimitErrorRetryHandler(max_retry_count=RETRIES),
        ServerErrorRetryHandler(max_retry_count=RETRIES),
    ]


async def _client(slack_block: str | None, text: str) -> tuple[WebClient, str] | None:
    logger = get_run_logger()
    if not slack_block:
        logger.info("Slack not configured; message: %s", text)
        return None
    try:
        channel = await SlackChannel.aload(slack_block)
    except Exception as exc:  # a missing block must not stop the runbook either
        logger.warning("Slack block %r not loadable (%s); message: %s", slack_block, exc, text)
        return None
    client = WebClient(
        token=channel.bot_token.get_secret_value(),
        base_url=channel.api_base_url,
        timeout=10,
        retry_handlers=retry_handlers(),
    )
    return client, channel.channel


async def _call(method: Callable[..., SlackResponse], text: str, **kwargs: Any) -> Any:
    """Call a Web API method (the client retries); its data, or None when Slack failed."""
    try:
        # slack_sdk's sync client needs no extra HTTP library; keep it off the loop.
        response = await asyncio.to_thread(method, text=text, **kwargs)
    except Exception as exc:
        # The exception text of slack_sdk never includes the token.
        get_run_logger().warning("Slack call failed (%s); message not delivered: %s", exc, text)
        return None
    return response.data


def _thread(proposal_id: int | None) -> slack_threads_records.SlackThreadRecord | None:
    if proposal_id is None:
        return None
    try:
        return slack_threads_records.get_slack_thread(records_engine(), proposal_id)
    except Exception as exc:  # no thread known: the message goes to the channel
        get_run_logger().warning("Slack thread of proposal #%s not readable: %s", proposal_id, exc)
        return None


@task(name="notify-slack", retries=0)
async def notify(
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    slack_block: str | None = None,
    *,
    proposal_id: int | None = None,
) -> bool:
    """Post to Slack when a channel block is configured; otherwise log the message.

    With ``proposal_id`` whose thread is open, the message is a reply in that thread.
    Returns whether Slack accepted it. Failures that may pass are retried (the client's
    retry handlers), then logged as a warning:
    a runbook must go on when Slack is unreachable.
    """
    found = await _client(slack_block, text)
    if found is None:
        return False
    client, channel = found
    thread = _thread(proposal_id)
    where: dict[str, Any] = (
        {"channel": channel}
        if thread is None
        else {"channel": thread.channel, "thread_ts": thread.ts}
    )
    return await _call(client.chat_postMessage, text, blocks=blocks, **where) is not None


@task(name="open-slack-thread", retries=0)
async def open_thread(
    proposal_id: int, text: str, blocks: list[dict[str, Any]], slack_block: str | None
) -> bool:
    """Post a proposal's first message, once: a restarted run finds the thread recorded."""
    if _thread(proposal_id) is not None:
        return True
    found = await _client(slack_block, text)
    if found is None:
        return False
    client, channel = found
    reply = await _call(client.chat_postMessage, text, channel=channel, blocks=blocks)
    if reply is None:
        return False
    try:
        slack_threads_records.record_slack_thread(
            records_engine(),
            proposal_id,
            channel=str(reply["channel"]),
            ts=str(reply["ts"]),
            text=text,
            blocks=blocks,
            flow_run_id=current_run_id(),
        )
    except Exception as exc:  # later events then go to the channel, as before threads
        get_run_logger().warning("Slack thread of proposal #%d not recorded: %s", proposal_id, exc)
    return True


@task(name="update-slack-thread", retries=0)
async def update_thread(
    proposal_id: int, status: dict[str, Any], slack_block: str | None, text: str | None = None
) -> bool:
    """Rewrite the status block of a proposal's first message (``chat.update``)."""
    thread = _thread(proposal_id)
    if thread is None:
        return False
    found = await _client(slack_block, text or thread.text)
    if found is None:
        return False
    client, _ = found
    blocks = replace_status(thread.blocks, status)
    reply = await _call(
        client.chat_update, text or thread.text, channel=thread.channel, ts=thread.ts, blocks=blocks
    )
    return reply is not None


def replace_status(
    blocks: Sequence[dict[str, Any]], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """``blocks`` with the status block swapped for ``status`` (appended if it had none)."""
    kept = [b for b in blocks if b.get("block_id") != STATUS_BLOCK_ID]
    at = next((i for i, b in enumerate(blocks) if b.get("block_id") == STATUS_BLOCK_ID), len(kept))
    return [*kept[:at], status, *kept[at:]]

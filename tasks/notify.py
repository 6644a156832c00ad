"""Slack notifications. Slack being down never blocks or fails a runbook."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import get_run_logger, task
from slack_sdk import WebClient

from blocks.slack import SlackChannel

ATTEMPTS = 3


@task(name="notify-slack", retries=0)
async def notify(
    text: str, blocks: list[dict[str, Any]] | None = None, slack_block: str | None = None
) -> bool:
    """Post to Slack when a channel block is configured; otherwise log the message.

    Returns whether Slack accepted it. Failures are retried, then logged as a warning:
    a runbook must go on when Slack is unreachable.
    """
    logger = get_run_logger()
    if not slack_block:
        logger.info("Slack not configured; message: %s", text)
        return False
    try:
        channel = await SlackChannel.aload(slack_block)
    except Exception as exc:  # a missing block must not stop the runbook either
        logger.warning("Slack block %r not loadable (%s); message: %s", slack_block, exc, text)
        return False
    client = WebClient(
        token=channel.bot_token.get_secret_value(), base_url=channel.api_base_url, timeout=10
    )
    for attempt in range(1, ATTEMPTS + 1):
        try:
            # slack_sdk's sync client needs no extra HTTP library; keep it off the loop.
            await asyncio.to_thread(
                client.chat_postMessage, channel=channel.channel, text=text, blocks=blocks
            )
            return True
        except Exception as exc:
            # The exception text of slack_sdk never includes the token.
            logger.warning("Slack post attempt %d/%d failed: %s", attempt, ATTEMPTS, exc)
            await asyncio.sleep(0.5 * attempt)
    logger.warning("Slack unreachable; message not delivered: %s", text)
    return False

"""Sign-offs that need no signature: acknowledge an alert, confirm a kill-switch release.

The run pauses with a ``Confirmation`` form (answerable in the Prefect UI) and a Slack
message with buttons; a click goes through ``runbooks.slack_handler``, which resumes the
run with the Slack user's identity. Either way the run gets back who decided what.
"""

from __future__ import annotations

from typing import Literal

from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from pydantic import Field

from flows._pause import pause_for_input

Decision = Literal["acknowledge", "confirm", "decline"]


class Confirmation(RunInput):
    """Who confirmed, and what they decided."""

    decision: Decision = Field(
        title="Decision", description="acknowledge an alert; confirm or decline a request."
    )
    by: str = Field(
        title="Who",
        description="Your name. A Slack button fills in your Slack user id.",
        min_length=1,
    )
    slack_user_id: str | None = Field(default=None, title="Slack user id")
    slack_user_name: str | None = Field(default=None, title="Slack user name")
    note: str | None = Field(default=None, title="Note")


async def wait_for_confirmation(
    *, key: str, description: str, timeout_seconds: int, poll_interval: int
) -> Confirmation | None:
    """Pause at ``key`` until someone confirms; None when nobody did in time."""
    try:
        return await pause_for_input(
            Confirmation.with_initial_data(description=description),
            timeout=timeout_seconds,
            poll_interval=poll_interval,
            key=key,
        )
    except FlowPauseTimeout:
        return None

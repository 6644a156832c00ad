"""Where runbook messages go in Slack."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class SlackChannel(Block):
    """A Slack bot token and channel; with no block configured, messages are logged."""

    _block_type_name = "Slack Channel"
    _block_type_slug = "slack-channel"
    _description = "Slack bot token and channel for runbook notifications."

    bot_token: SecretStr = Field(title="Bot token", description="xoxb-... token of the Slack app.")
    channel: str = Field(title="Channel", description="Channel id or name, e.g. #ops-upgrades.")
    api_base_url: str = Field(
        default="https://slack.com/api/",
        title="API base URL",
        description="Slack's Web API; changed only for tests or a proxy.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        title="Signing secret",
        description="Verifies button clicks sent back by Slack.",
    )

"""Where runbook messages go in Slack."""

from __future__ import annotations

from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator


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

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() for c in value) or len(value) > 80:
            raise ValueError(
                f"channel {value[:40]!r} is not a Slack channel id or #name; give one such "
                "as C0123ABCD or #ops-upgrades"
            )
        return value

    @field_validator("api_base_url")
    @classmethod
    def _api(cls, value: str) -> str:
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"API base URL {value[:80]!r} is not an http(s) URL; leave the default "
                "https://slack.com/api/"
            )
        return value.strip()

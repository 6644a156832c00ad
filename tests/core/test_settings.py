"""The one settings object reads the environment when asked, not at import."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.settings import settings


def test_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", raising=False)
    monkeypatch.setenv("RUNBOOKS_METRICS_HOST", "")
    assert settings().inline_timelock_seconds == 15 * 60
    assert settings().metrics_host == ""  # empty counts as unset
    monkeypatch.setenv("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "0.5")
    monkeypatch.setenv("DATABASE_URL", "  sqlite:///records.db ")
    monkeypatch.setenv("RUNBOOKS_PAUSE_POLL_SECONDS", "3")
    now = settings()
    assert now.inline_timelock_seconds == 0.5
    assert now.database_url == "sqlite:///records.db"
    assert now.pause_poll_seconds == 3


def test_a_value_that_does_not_parse_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOKS_PAUSE_POLL_SECONDS", "soon")
    with pytest.raises(InputError, match="RUNBOOKS_PAUSE_POLL_SECONDS='soon'"):
        settings()

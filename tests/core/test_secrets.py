"""The one scrubber: a secret never survives into a message."""

from __future__ import annotations

from core.secrets import scrub


def test_scrub_masks_every_occurrence() -> None:
    assert scrub("auth failed for hunter2 (hunter2)", "hunter2") == "auth failed for *** (***)"


def test_scrub_without_a_secret_changes_nothing() -> None:
    assert scrub("no password here", None) == "no password here"
    assert scrub("no password here", "") == "no password here"


def test_scrub_cuts_after_masking() -> None:
    text = "x" * 10 + "hunter2"
    assert scrub(text, "hunter2", max_chars=12) == "x" * 10 + "**"
    assert "hunt" not in scrub(text, "hunter2", max_chars=14)

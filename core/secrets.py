"""Keeping secrets out of messages: the one scrubber every error path uses.

Driver errors and subprocess output (psql, pg_dump) can echo a password back; whatever
reaches a log line, an exception or a Slack message passes through ``scrub`` first.
"""

from __future__ import annotations

MASK = "***"


def scrub(text: str, secret: object | None, *, max_chars: int | None = None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``.

    An empty or missing secret changes nothing. ``max_chars`` cuts the result (after
    scrubbing, so a cut can never leave part of the secret behind).
    """
    if secret:
        text = text.replace(str(secret), MASK)
    return text if max_chars is None else text[:max_chars]


__all__ = ["MASK", "scrub"]

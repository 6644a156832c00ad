"""Idempotency keys: one recipe for every runbook that must find its own work again.

A key is ``<prefix>-`` followed by the first 32 hex digits of the SHA-256 of
``kind|part|...|part``. Runbooks store it with the proposal (or migration) they open, so a
restarted run looks the record up by the same key instead of opening a second one. The
strings are persisted: changing the recipe would orphan every open proposal.
"""

from __future__ import annotations

import hashlib

# The last part of a run-scoped key when no flow run is active (a flow called directly).
NO_RUN = "no-run"


def idempotency_key(kind: str, *parts: str, prefix: str | None = None) -> str:
    """``prefix`` (default: ``kind``) + ``-`` + sha256("kind|part|...")[:32]."""
    raw = "|".join((kind, *parts))
    return f"{prefix or kind}-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


__all__ = ["NO_RUN", "idempotency_key"]

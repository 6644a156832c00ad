"""Which backup sets to keep: the retention rule of the weekly backup, plain Python.

The sets themselves (dumps, program binaries, manifests) are written and read by
``store/backup.py``; this module only decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import InputError


@dataclass(frozen=True)
class SetAge:
    name: str
    created: datetime
    good: bool


def plan_retention(
    sets: Sequence[SetAge], *, keep_last: int, keep_days: int, now: datetime
) -> list[str]:
    """Names of the sets to delete.

    Kept: the newest ``keep_last`` good sets (never fewer than one good set), and every
    set younger than ``keep_days`` (a failed one stays that long for inspection).
    """
    if keep_last < 1:
        raise InputError("keep_last must be at least 1: the newest good backup is never deleted")
    if keep_days < 0:
        raise InputError("keep_days must not be negative")
    good = sorted((s for s in sets if s.good), key=lambda s: s.created, reverse=True)
    protected = {s.name for s in good[:keep_last]}
    horizon = now - timedelta(days=keep_days)
    return [s.name for s in sets if s.name not in protected and s.created < horizon]

"""Key rotation rules: the schedule, what members sign, and the immutability guard.

Plain Python. Seed 001's schedule: program upgrade keys every 6 months, governance keys
every 12, emergency keys every 3; reminders go out before a key is due.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from core.approval import (
    Action,
    ApprovalSubject,
    check_restricted_ascii,
    line_head,
)
from core.errors import InputError
from store.records.key_rotation import KeyRecord

ROTATION_MONTHS: dict[str, int] = {"upgrade": 6, "governance": 12, "emergency": 3}
DEFAULT_REMIND_DAYS = 30
IMMUTABLE = "none"


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, clamped to the month's last day (Aug 31 + 6 = Feb 28)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_at(role: str, rotated_at: datetime) -> datetime:
    if role not in ROTATION_MONTHS:
        raise InputError(f"role must be one of {', '.join(ROTATION_MONTHS)}; got {role!r}")
    return add_months(rotated_at, ROTATION_MONTHS[role])


@dataclass(frozen=True)
class KeyDue:
    key: KeyRecord
    due_at: datetime
    days_left: int  # negative when overdue
    status: Literal["ok", "due-soon", "overdue"]


def review(keys: Iterable[KeyRecord], now: datetime, remind_days: int) -> list[KeyDue]:
    """Each active key with its due date, the soonest first."""
    result = []
    for key in keys:
        if not key.active:
            continue
        due = due_at(key.role, key.rotated_at)
        left = due - now
        days = int(left.total_seconds() // 86400)
        if left <= timedelta(0):
            status: Literal["ok", "due-soon", "overdue"] = "overdue"
        elif left <= timedelta(days=remind_days):
            status = "due-soon"
        else:
            status = "ok"
        result.append(KeyDue(key, due, days, status))
    return sorted(result, key=lambda k: k.due_at)


@dataclass(frozen=True)
class AuthorityChangeSubject(ApprovalSubject):
    """What members sign to move a program's upgrade authority (or remove it).

    Same domain tag and envelope as an upgrade approval, but its own fields: a signature
    over an upgrade can never be replayed as an authority change, nor the reverse.
    """

    new_authority: str = IMMUTABLE

    def message(self, action: Action = "approve") -> str:
        what = "make-immutable" if self.new_authority == IMMUTABLE else "set-authority"
        text = (
            f"{line_head(action, self.cluster)}governance: {self.governance}; "
            f"proposal: {self.proposal}; program: {self.program}; change: {what}; "
            f"new-authority: {self.new_authority}; sha256: {self.sha256}"
        )
        check_restricted_ascii(text)
        return text


def check_immutable_confirmation(program_id: str, typed: str | None) -> None:
    """Making a program immutable is forever: the operator must type its id exactly."""
    if (typed or "").strip() != program_id:
        raise InputError(
            "making a program immutable cannot be undone: type the program id "
            f"{program_id} exactly into confirm_program_id to go on (got "
            f"{(typed or '').strip() or 'nothing'})"
        )

"""The account migration's rules, pure: which accounts a pass works on, and how it ends.

``plan`` picks the accounts of a pass from what is on chain and what the records say;
``outcome`` turns what the pass found (mismatches, failures, accounts left pending) into
the status the records keep and the error the run fails with. Plain Python: no Prefect
import. The runbook is ``flows/migration.py``; a program's layouts are its
``AccountMigrator`` (``programs/plugin.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from solders.pubkey import Pubkey

from core.errors import InputError, MigrationError, VerificationFailed

Status = Literal["completed", "incomplete", "failed"]
# Shards a migration splits into at most ("i/N", N <= MAX_SHARDS).
MAX_SHARDS = 256


class _Failure(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def error(self) -> str | None: ...


def plan(discovered: Iterable[str], states: Mapping[str, Any], *, retry_failed: bool) -> list[str]:
    """The accounts a migration pass works on, in a stable order.

    ``discovered``: accounts at the source layout on chain now; ``states``: address ->
    recorded state (with ``status``). Work on every discovered account except those that
    failed before (unless ``retry_failed``), and on every recorded ``pending`` account (a
    crashed run may have migrated it: the batch reads the chain before sending).
    """
    work = {
        a for a in discovered if retry_failed or getattr(states.get(a), "status", None) != "failed"
    }
    for address, state in states.items():
        if state.status == "pending" or (retry_failed and state.status == "failed"):
            work.add(address)
    return sorted(work)


def outcome(
    migration_id: int,
    mismatches: Mapping[str, str],
    failures: Sequence[_Failure],
    pending: int,
) -> tuple[Status, MigrationError | None]:
    """The status a finished pass records, and the error its run fails with (None: it
    succeeded). A mismatch fails the migration (stop writes and investigate); failed or
    pending accounts leave it incomplete (fix the cause and run again)."""
    status: Status = (
        "failed" if mismatches else ("incomplete" if failures or pending else "completed")
    )
    if mismatches:
        return status, VerificationFailed(dict(mismatches))
    if failures:
        shown = "; ".join(f"{f.address}: {f.error}" for f in failures[:5])
        return status, MigrationError(
            f"migration #{migration_id}: {len(failures)} accounts failed ({shown}"
            + (" ..." if len(failures) > 5 else "")
            + "); the others went on. See the failures artifact, fix the cause, and run "
            "again with retry_failed=true."
        )
    return status, None


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N) with 0 <= i < N <= 256; empty: None (every account)."""
    if text is None or not text.strip():
        return None
    index, sep, count = text.strip().partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n <= MAX_SHARDS:
        raise InputError(
            f'shard {text[:40]!r} is not of the form "i/N" with 0 <= i < N <= {MAX_SHARDS} '
            '(e.g. "0/4"); nothing was recorded'
        )
    return i, n


def in_shard(address: str, index: int, count: int) -> bool:
    """Whether the account at ``address`` (base58) belongs to shard ``index``/``count``:
    its first 8 bytes, little-endian, modulo ``count``."""
    key = bytes(Pubkey.from_string(address))
    return int.from_bytes(key[:8], "little") % count == index


def shard_of(address: str, count: int) -> int:
    """The shard (of ``count``) the account at ``address`` belongs to (see ``in_shard``)."""
    return int.from_bytes(bytes(Pubkey.from_string(address))[:8], "little") % count

"""The account migration's rules, pure: which accounts a pass works on, and how it ends.

``plan`` picks the accounts of a pass from what is on chain and what the records say;
``outcome`` turns what the pass found (mismatches, failures, accounts left pending) into
the status the records keep and the error the run fails with. Plain Python: no Prefect
import. The runbook is ``flows/migration.py``; a program's layouts are its
``AccountMigrator`` (``programs/plugin.py``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from solders.pubkey import Pubkey

from core.errors import InputError, MigrationError, VerificationFailed

Status = Literal["completed", "incomplete", "failed"]


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


MAX_SHARDS = 256
_SHARD = re.compile(r"(\d{1,3})/(\d{1,3})")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N) with 0 <= i < N <= 256; None or empty: no shard."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    match = _SHARD.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise InputError(f'shard must be of the form "i/N" (e.g. "0/4"), got {str(text)[:40]!r}')
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 < count <= MAX_SHARDS or not 0 <= index < count:
        raise InputError(f'shard "i/N" needs 0 <= i < N <= {MAX_SHARDS}, got {index}/{count}')
    return index, count


def shard_of_key(key: bytes, count: int) -> int:
    """The shard (of ``count``) a 32-byte account key belongs to."""
    return int.from_bytes(key[:8], "little") % count


def in_shard(address: str, index: int, count: int) -> bool:
    """Whether ``address`` belongs to shard ``index`` of ``count``."""
    return shard_of_key(bytes(Pubkey.from_string(address)), count) == index


class AccountKeys:
    """A sorted set of account keys held as one bytes blob, 32 bytes a key.

    A million keys take 32 MB here, against ~90 MB as Python strings: the key list is
    the only part of a migration's memory that grows with the account count.
    """

    def __init__(self, keys: Iterable[bytes] = ()) -> None:
        self._blob = b"".join(sorted(set(keys)))

    def __len__(self) -> int:
        return len(self._blob) // 32

    def __iter__(self) -> Iterator[bytes]:
        return (self.key(i) for i in range(len(self)))

    def key(self, index: int) -> bytes:
        return self._blob[index * 32 : index * 32 + 32]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, bytes) or len(key) != 32:
            return False
        n = len(self)
        at = bisect.bisect_left(range(n), key, key=self.key)
        return at < n and self.key(at) == key

    def batches(self, size: int) -> Iterator[list[str]]:
        """The keys as base58 addresses, ``size`` at a time, in key order."""
        for start in range(0, len(self), size):
            yield [
                str(Pubkey.from_bytes(self.key(i)))
                for i in range(start, min(start + size, len(self)))
            ]


def outcome(
    migration_id: int,
    mismatches: Mapping[str, str],
    failures: Sequence[_Failure],
    pending: int,
    failed: int | None = None,
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
        # ``failed``: the count when ``failures`` lists only the first ones.
        total = len(failures) if failed is None else failed
        shown = "; ".join(f"{f.address}: {f.error}" for f in failures[:5])
        return status, MigrationError(
            f"migration #{migration_id}: {total} accounts failed ({shown}"
            + (" ..." if total > 5 else "")
            + "); the others went on. See the failures artifact, fix the cause, and run "
            "again with retry_failed=true."
        )
    return status, None

"""Rolling a program back to an archived binary: what to archive, and when to refuse.

Plain Python: no Prefect import.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from core.errors import HashMismatch, RollbackRefused
from programs.loader import verifiable_hash
from store.records.archives import ArchiveRecord
from store.records.migrations import MigratedAccount

_SHT_NOBITS = 8
# Accounts named in a refusal; the rest are counted.
_NAMED = 20


def elf_length(data: bytes) -> int | None:
    """Where a 64-bit little-endian ELF image ends (its headers, sections and segments);
    None when ``data`` is not such an ELF or is cut short."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    end = max(64, phoff + phentsize * phnum, shoff + shentsize * shnum)
    if end > len(data):
        return None
    for i in range(shnum):
        at = shoff + i * shentsize
        sh_type = struct.unpack_from("<I", data, at + 4)[0]
        offset, size = struct.unpack_from("<QQ", data, at + 0x18)
        if sh_type != _SHT_NOBITS:
            end = max(end, offset + size)
    for i in range(phnum):
        at = phoff + i * phentsize
        offset = struct.unpack_from("<Q", data, at + 8)[0]
        filesz = struct.unpack_from("<Q", data, at + 0x20)[0]
        end = max(end, offset + filesz)
    return end if end <= len(data) else None


def archived_bytes(program: bytes) -> bytes:
    """The bytes to keep of a ProgramData's program area: the ELF without the zero padding
    up to the account's size, with the same verifiable-build hash.

    Stripping every trailing zero is not enough: an ELF may itself end in zero bytes (its
    last section header), and a buffer cut there would not load.
    """
    program = bytes(program)
    expected = verifiable_hash(program)
    end = elf_length(program)
    if end is not None and verifiable_hash(program[:end]) == expected:
        return program[:end]
    return program.rstrip(b"\x00")


def check_archive(archive: ArchiveRecord) -> None:
    """The archived bytes must still hash to the hash they were archived under: a changed
    row (a bad restore, an edit) is refused before anything is written to the chain."""
    actual = verifiable_hash(archive.data)
    if actual != archive.sha256:
        raise HashMismatch(
            f"archive #{archive.id} of {archive.program_id} (its stored bytes no longer match "
            "the hash they were archived under; restore the records from a backup)",
            archive.sha256,
            actual,
        )


def refuse_over_migrated(
    target_hash: str, accounts: Sequence[MigratedAccount], *, force_reason: str | None
) -> None:
    """Refuse a rollback to ``target_hash`` while ``accounts`` hold a layout written by
    another binary, unless forced with a reason."""
    if not accounts or (force_reason and force_reason.strip()):
        return
    layouts = sorted({f"v{a.to_version} ({a.migrator})" for a in accounts})
    named = ", ".join(a.address for a in accounts[:_NAMED])
    more = f" and {len(accounts) - _NAMED} more" if len(accounts) > _NAMED else ""
    raise RollbackRefused(
        f"rollback to {target_hash} refused: {len(accounts)} accounts were migrated to layout "
        f"{', '.join(layouts)} by another binary, which the target may not read: {named}{more}. "
        "Roll forward instead, or rerun with force=true and a force_reason (recorded) if the "
        "target is known to read them.",
        [a.address for a in accounts],
    )


__all__ = [
    "RollbackRefused",
    "archived_bytes",
    "check_archive",
    "elf_length",
    "refuse_over_migrated",
]

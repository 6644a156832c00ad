"""The verifiable-build hash: the one recipe the chain reads, the archives and the backups
check against.

solana-verify's hash is the hex SHA-256 of the program bytes without trailing zero bytes:
accounts are zero-padded up to their allocated length, so stripping makes a local .so, a
buffer and a ProgramData holding the same program hash alike. A second copy that drifted
would make an archive or a backup refuse (or accept) the wrong binary.
"""

from __future__ import annotations

import hashlib


def verifiable_hash(elf_bytes: bytes) -> str:
    """solana-verify's hash: hex SHA-256 of the bytes without trailing zero bytes."""
    return hashlib.sha256(bytes(elf_bytes).rstrip(b"\x00")).hexdigest()


__all__ = ["verifiable_hash"]

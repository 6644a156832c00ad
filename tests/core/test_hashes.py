"""The verifiable-build hash: one recipe, the same for a file, a buffer and a ProgramData."""

from __future__ import annotations

import hashlib

from core.hashes import verifiable_hash
from programs import loader
from store import backup


def test_trailing_zero_padding_does_not_change_the_hash() -> None:
    code = b"\x7fELF-program\x00bytes"
    assert verifiable_hash(code) == hashlib.sha256(code).hexdigest()
    assert verifiable_hash(code + b"\x00" * 4096) == verifiable_hash(code)
    assert verifiable_hash(bytearray(code)) == verifiable_hash(code)
    # A zero inside the program counts; only the padding at the end is cut.
    assert verifiable_hash(b"\x00" + code) != verifiable_hash(code)


def test_the_chain_side_and_the_store_side_use_the_same_recipe() -> None:
    assert loader.verifiable_hash is verifiable_hash
    assert backup.verifiable_hash is verifiable_hash

"""A small Anchor-style wire codec shared by our program clients.

Our C programs follow Anchor's conventions so their instructions and accounts look
familiar to anyone who has read an Anchor IDL (anchorpy itself cannot be used with
our dependency pins; see DESIGN.md):

- instruction data = ``sha256("global:<name>")[:8]`` then the arguments, little-endian,
  fixed width (borsh for the types we use: u8..u64, i64, bool, 32-byte pubkeys);
- account data starts with ``sha256("account:<Name>")[:8]``;
- errors use Anchor's framework codes (100, 101, 2001, 3002, 3007, 3010, ...) and
  program codes from 6000.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from enum import IntEnum

from solders.pubkey import Pubkey

DISCRIMINATOR_SIZE = 8


@functools.cache
def instruction_discriminator(name: str) -> bytes:
    """``sha256("global:<name>")[:8]``, e.g. ``instruction_discriminator("deposit")``."""
    return hashlib.sha256(f"global:{name}".encode()).digest()[:DISCRIMINATOR_SIZE]


@functools.cache  # checked on every account read: a sha256 each time adds up
@functools.cache  # hashed once per name: account checks run per account read
def account_discriminator(name: str) -> bytes:
    """``sha256("account:<Name>")[:8]``, e.g. ``account_discriminator("Vault")``."""
    return hashlib.sha256(f"account:{name}".encode()).digest()[:DISCRIMINATOR_SIZE]


def pack_u8(value: int) -> bytes:
    return struct.pack("<B", value)


def pack_u16(value: int) -> bytes:
    return struct.pack("<H", value)


def pack_u32(value: int) -> bytes:
    return struct.pack("<I", value)


def pack_u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def pack_i64(value: int) -> bytes:
    return struct.pack("<q", value)


def pack_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def pack_pubkey(value: Pubkey) -> bytes:
    return bytes(value)


def instruction_data(name: str, *fields: bytes) -> bytes:
    """Discriminator of ``name`` followed by already-packed fields."""
    return instruction_discriminator(name) + b"".join(fields)


class Reader:
    """Reads little-endian fields from account data, front to back."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = bytes(data)
        self.offset = offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise ValueError(f"account data too short: need {end} bytes, have {len(self.data)}")
        out = self.data[self.offset : end]
        self.offset = end
        return out

    def skip(self, size: int) -> Reader:
        self.take(size)
        return self

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("<H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def i64(self) -> int:
        return int(struct.unpack("<q", self.take(8))[0])

    def bool(self) -> bool:
        return self.u8() != 0

    def pubkey(self) -> Pubkey:
        return Pubkey.from_bytes(self.take(32))


def check_account_discriminator(data: bytes, name: str) -> None:
    """Raise ``ValueError`` unless ``data`` starts with the discriminator of account ``name``."""
    expected = account_discriminator(name)
    if bytes(data[:DISCRIMINATOR_SIZE]) != expected:
        raise ValueError(
            f"not a {name} account: discriminator {bytes(data[:8]).hex()}, "
            f"expected {expected.hex()}"
        )


class AnchorError(IntEnum):
    """Anchor's framework error codes, as our C programs return them."""

    InstructionMissing = 100
    InstructionFallbackNotFound = 101
    InstructionDidNotDeserialize = 102
    ConstraintHasOne = 2001
    AccountDiscriminatorAlreadySet = 3000
    AccountDiscriminatorNotFound = 3001
    AccountDiscriminatorMismatch = 3002
    AccountDidNotDeserialize = 3003
    AccountNotEnoughKeys = 3005
    AccountNotMutable = 3006
    AccountOwnedByWrongProgram = 3007
    AccountNotSigner = 3010
    AccountNotSystemOwned = 3011


def error_name(code: int, program_errors: type[IntEnum] | None = None) -> str:
    """A readable name for a custom error code (Anchor's, or the program's own enum)."""
    for enum in (AnchorError, program_errors):
        if enum is None:
            continue
        try:
            return enum(code).name
        except ValueError:
            continue
    return f"Custom({code})"

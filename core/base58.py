"""Base58 (Bitcoin's alphabet, as Solana writes keys, signatures and account data): one codec.

No package in the dependency tree exposes a plain codec (solders converts only keys and
signatures, which have fixed lengths), so it is written here once. Account data in RPC
answers and memcmp filters carry arbitrary bytes base58-encoded; leading zero bytes
become leading ``1``s and back.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58 of raw bytes."""
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """The bytes of a base58 string; ``ValueError`` naming the first character not in the
    alphabet (the wording Agave's RPC uses)."""
    n = 0
    for i, c in enumerate(text):
        digit = _INDEX.get(c)
        if digit is None:
            raise ValueError(f"provided string contained invalid character {c!r} at byte {i}")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + n.to_bytes((n.bit_length() + 7) // 8, "big")

"""Parsing keys and signatures from operator input, with errors that say what to fix.

Nothing here ever puts secret key bytes into a message or a repr.
"""

from __future__ import annotations

import json
from pathlib import Path

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from core.errors import InputError


def parse_pubkey(value: str, field: str = "pubkey") -> Pubkey:
    """A base58 public key, or InputError naming the field."""
    text = (value or "").strip()
    try:
        key = Pubkey.from_string(text)
    except Exception as exc:  # solders raises a plain ValueError/PyO3 error
        raise InputError(
            f"{field}: {text[:60]!r} is not a base58 public key (32 bytes); "
            "paste the address exactly as `solana address` prints it"
        ) from exc
    return key


def parse_signature(value: str, field: str = "signature") -> Signature:
    """A base58 ed25519 signature, or InputError naming the field."""
    text = (value or "").strip()
    try:
        sig = Signature.from_string(text)
    except Exception as exc:
        raise InputError(
            f"{field}: {text[:100]!r} is not a base58 ed25519 signature (64 bytes); "
            "paste the signature exactly as `runbooks sign` or "
            "`solana sign-offchain-message` prints it"
        ) from exc
    return sig


def parse_sha256(value: str, field: str = "sha256") -> str:
    """A SHA-256 as 64 hex digits (lowercased), or InputError naming the field."""
    text = (value or "").strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise InputError(
            f"{field}: {text[:80]!r} is not a SHA-256 (64 hex digits); paste the hash "
            "exactly as `solana-verify get-executable-hash` or `sha256sum` prints it"
        )
    return text


def keypair_from_json(text: str, what: str = "keypair") -> Keypair:
    """A Solana CLI keypair (JSON array of 64 integers). The error never echoes the bytes."""
    try:
        raw = json.loads(text)
        if not (isinstance(raw, list) and len(raw) == 64):
            raise ValueError
        return Keypair.from_bytes(bytes(raw))
    except Exception:
        raise InputError(
            f"{what}: not a Solana keypair (expected a JSON array of 64 integers, "
            "as `solana-keygen new -o FILE` writes)"
        ) from None


def load_keypair(path: str | Path) -> Keypair:
    """Read a Solana CLI keypair file."""
    file = Path(path).expanduser()
    try:
        # Not text at all is "not a keypair" too, never a decode error quoting its bytes.
        text = file.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"keypair file {file}: cannot be read ({exc.strerror})") from None
    return keypair_from_json(text, what=f"keypair file {file}")


def keypair_to_json(keypair: Keypair) -> str:
    """The Solana CLI file format for a keypair (for writing demo/test key files)."""
    return json.dumps(list(bytes(keypair)))

"""A stand-in Ledger running the Solana app, spoken to at the USB HID report level.

It follows the app's documented protocol (Agave's ``remote-wallet``, LedgerHQ's
``@ledgerhq/hw-app-solana``), written here on its own rather than from
``programs.ledger``, so the two check each other:

- 64-byte reports ``0x0101 | 0x05 | sequence (2 bytes BE)``, the first carrying the
  APDU's length (2 bytes BE); its answers are framed the same way.
- ``CLA 0xE0``; ``GET_APP_CONFIGURATION`` (0x04), ``GET_PUBKEY`` (0x05: a path, count
  byte then 4-byte BE components), ``SIGN_MESSAGE`` (0x06, P1 1: ``1 | path | message``
  across APDUs, ``P2_MORE`` 0x02 on all but the last, ``P2_EXTEND`` 0x01 on all but the
  first). Keys are ed25519 (solders ``Keypair``), one per path, from the device's seed.
- What a person or the device's state does: ``refuse`` (the person rejects: 0x6985),
  ``app`` "solana", "dashboard" (0x6E01), "bitcoin" (another app: 0x6E00) or "locked"
  (0x5515); ``tamper`` answers a signature over other bytes.

``signed`` keeps each message it signed (tampered ones not), ``apdus`` every APDU it
received. No pytest import.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque

from solders.keypair import Keypair

OK = b"\x90\x00"
USER_REFUSED = 0x6985
APP_STATUS = {"dashboard": 0x6E01, "bitcoin": 0x6E00, "locked": 0x5515}
HARDENED = 0x8000_0000


class StandInLedger:
    def __init__(self, seed: bytes = b"stand-in ledger", app: str = "solana") -> None:
        self.seed = seed
        self.app = app
        self.refuse = False
        self.tamper = False
        self.closed = False
        self.apdus: list[bytes] = []
        self.signed: list[bytes] = []
        self._incoming = b""
        self._length: int | None = None
        self._seq = 0
        self._outgoing: deque[bytes] = deque()
        self._sign_buffer: bytes | None = None

    def key_at(self, path: tuple[int, ...]) -> Keypair:
        """The key the device holds at ``path`` (hardened components)."""
        raw = b"".join(struct.pack(">I", c) for c in path)
        return Keypair.from_seed(hashlib.sha256(self.seed + raw).digest())

    def key(self, *indexes: int) -> Keypair:
        """The key at 44'/501'[/a'[/b']]."""
        return self.key_at(tuple(i | HARDENED for i in (44, 501, *indexes)))

    # The HID report level, as hidapi's write and read.
    def write(self, report: bytes) -> None:
        assert len(report) == 64, f"a report of {len(report)} bytes"
        channel, tag, seq = struct.unpack(">HBH", report[:5])
        assert (channel, tag, seq) == (0x0101, 0x05, self._seq), report[:5].hex()
        body = report[5:]
        if seq == 0:
            (self._length,) = struct.unpack(">H", body[:2])
            body = body[2:]
        self._seq += 1
        self._incoming += body
        assert self._length is not None
        if len(self._incoming) >= self._length:
            apdu = self._incoming[: self._length]
            self._incoming, self._length, self._seq = b"", None, 0
            self._frame(self._answer(apdu))

    def read(self) -> bytes:
        if not self._outgoing:
            raise RuntimeError("read with no answer pending: a real device would block")
        return self._outgoing.popleft()

    def close(self) -> None:
        self.closed = True

    def _frame(self, answer: bytes) -> None:
        data = struct.pack(">H", len(answer)) + answer
        seq = 0
        while seq == 0 or data:
            room = 64 - 5
            self._outgoing.append(
                (struct.pack(">HBH", 0x0101, 5, seq) + data[:room]).ljust(64, b"\0")
            )
            data = data[room:]
            seq += 1

    # The Solana app.
    def _answer(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        if self.app != "solana":
            return struct.pack(">H", APP_STATUS[self.app])
        cla, ins, p1, p2, lc = apdu[:5]
        data = apdu[5:]
        if cla != 0xE0:
            return b"\x6e\x00"
        if lc != len(data):
            return b"\x67\x00"
        if ins == 0x04:
            return bytes([0, 0, 1, 10, 1]) + OK
        if ins == 0x05:
            path = self._path(data)
            if path is None:
                return b"\x6a\x80"
            return bytes(self.key_at(path).pubkey()) + OK
        if ins == 0x06:
            return self._sign(p1, p2, data)
        return b"\x6d\x00"

    @staticmethod
    def _path(data: bytes) -> tuple[int, ...] | None:
        if not data or len(data) != 1 + 4 * data[0] or not 2 <= data[0] <= 5:
            return None
        path = struct.unpack(f">{data[0]}I", data[1:])
        if path[:2] != (44 | HARDENED, 501 | HARDENED):
            return None
        return path

    def _sign(self, p1: int, p2: int, data: bytes) -> bytes:
        if p1 != 0x01:
            return b"\x6b\x00"
        if p2 & 0x01:  # P2_EXTEND: continues what came before
            if self._sign_buffer is None:
                return b"\x6a\x80"
            self._sign_buffer += data
        else:
            self._sign_buffer = data
        if p2 & 0x02:  # P2_MORE: wait for the rest
            return OK
        payload, self._sign_buffer = self._sign_buffer, None
        if payload[0] != 1:
            return b"\x6a\x80"
        count = payload[1]
        path = self._path(payload[1 : 2 + 4 * count])
        message = payload[2 + 4 * count :]
        if path is None or not message:
            return b"\x6a\x80"
        if self.refuse:
            return struct.pack(">H", USER_REFUSED)
        if self.tamper:  # a signature, but over other bytes
            return bytes(self.key_at(path).sign_message(message + b"x")) + OK
        self.signed.append(message)
        return bytes(self.key_at(path).sign_message(message)) + OK

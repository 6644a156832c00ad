"""The Solana Ledger app's wire format, and the device it is spoken to over USB HID.

What the Solana app takes (the protocol of Agave's ``remote-wallet`` and LedgerHQ's
``@ledgerhq/hw-app-solana``):

- **APDUs** ``CLA 0xE0 | INS | P1 | P2 | Lc | data``: ``GET_PUBKEY`` (0x05) takes a
  derivation path; ``SIGN_MESSAGE`` (0x06, P1 ``CONFIRM``) takes ``1`` (one signer), the
  path and the message, cut into 255-byte APDUs: every one but the last has ``P2_MORE``,
  every one after the first ``P2_EXTEND``.
- **Derivation paths**: a count byte, then each component as 4 bytes big-endian, all
  hardened (0x80000000). ``usb://ledger`` is 44'/501'; ``?key=0`` is 44'/501'/0' and
  ``?key=0/0`` 44'/501'/0'/0', as ``solana`` reads the locator.
- **HID framing**: an APDU goes out in 64-byte reports ``channel 0x0101 | tag 0x05 |
  sequence (2 bytes)``, the first one followed by the APDU's length (2 bytes); the answer
  comes back the same way and ends with a status word (0x9000: done).

Plain Python; the ``hid`` module (``pip install hidapi``, the ``ledger`` extra) is imported
only when a real device is opened. Tests talk to a stand-in device through the same
``ReportDevice`` seam.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from solders.pubkey import Pubkey
from solders.signature import Signature

from core.errors import InputError

CLA = 0xE0
INS_GET_APP_CONFIGURATION = 0x04
INS_GET_PUBKEY = 0x05
INS_SIGN_MESSAGE = 0x06
P1_NON_CONFIRM = 0x00
P1_CONFIRM = 0x01
P2_EXTEND = 0x01
P2_MORE = 0x02
MAX_CHUNK = 255
# The Solana app reads a legacy or v0 transaction message of at most this many bytes
# (Agave refuses longer ones before sending).
MAX_MESSAGE = 0xFFFF

HARDENED = 0x8000_0000
SOLANA_ROOT = (44 | HARDENED, 501 | HARDENED)

CHANNEL = 0x0101
TAG_APDU = 0x05
REPORT_SIZE = 64
LEDGER_VENDOR_ID = 0x2C97
# The Ledger's APDU interface: HID usage page 0xFFA0 (interface 0 where it is not reported).
LEDGER_USAGE_PAGE = 0xFFA0

STATUS_OK = 0x9000
PLUG_IN = "plug in your Ledger, unlock it and open the Solana app"
# What each status word means to the person at the device, and what to do.
STATUS_WORDS: dict[int, str] = {
    0x6985: "you refused it on the Ledger; nothing was signed (run it again to approve)",
    0x6982: "the Ledger refused: it is locked or you cancelled; unlock it and try again",
    0x5515: "the Ledger is locked; unlock it with your PIN and open the Solana app",
    0x6B0C: "the Ledger is locked; unlock it with your PIN and open the Solana app",
    0x6E00: "the Solana app is not open on the Ledger; open it and try again",
    0x6E01: "the Solana app is not open on the Ledger; open it and try again",
    0x6D00: "the app open on the Ledger is not the Solana app; open the Solana app",
    0x6511: "the Solana app is not open on the Ledger; open it and try again",
    0x6A15: "the app open on the Ledger is not the Solana app; open the Solana app",
    0x6700: "the Solana app is not open on the Ledger (or it is too old); open or update it",
    0x6808: "the Solana app needs blind signing for this message: enable it in the app's "
    "settings, or approve in the Squads app",
    0x6A80: "the Solana app could not read the message (invalid data); update the Solana "
    "app, or enable blind signing in its settings",
    0x6A81: "the Solana app refused the message header; update the Solana app",
    0x6A82: "the Solana app refused the message format; update the Solana app",
    0x6A83: "the message is too long for the Solana app",
    0x6B00: "the Solana app refused the request's parameters; update the Solana app",
}


class LedgerError(InputError):
    """The Ledger refused or could not be reached; the message says what to do."""


@dataclass(frozen=True)
class Locator:
    """``usb://ledger[/<pubkey>][?key=a[/b]]``: which wallet (its 44'/501' key, when
    given) and which key on it."""

    wallet: Pubkey | None
    path: tuple[int, ...]

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def parse_locator(text: str) -> Locator:
    """The locator ``solana`` accepts for a Ledger, or InputError naming what is wrong."""
    how = "write it as usb://ledger, usb://ledger?key=0 or usb://ledger/<wallet pubkey>?key=0/0"
    parts = urlsplit(text.strip())
    if parts.scheme.lower() != "usb" or parts.netloc.lower() != "ledger":
        raise InputError(f"{text!r} is not a Ledger locator; {how}")
    wallet = None
    segment = parts.path.strip("/")
    if segment:
        try:
            wallet = Pubkey.from_string(segment)
        except Exception as exc:  # solders raises a plain ValueError
            raise InputError(
                f"{text!r}: {segment!r} after usb://ledger/ is not a base58 public key "
                f"(the wallet's key, as `solana-keygen pubkey usb://ledger` prints it); {how}"
            ) from exc
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"key"})
    if unknown:
        raise InputError(f"{text!r}: unknown query {', '.join(unknown)}; {how}")
    path = SOLANA_ROOT
    if "key" in query:
        (key,) = query["key"] if len(query["key"]) == 1 else (None,)
        if key is None:
            raise InputError(f"{text!r}: give key= once; {how}")
        path = SOLANA_ROOT + _key_components(text, key, how)
    return Locator(wallet, path)


def _key_components(text: str, key: str, how: str) -> tuple[int, ...]:
    pieces = key.split("/")
    if not 1 <= len(pieces) <= 2:
        raise InputError(f"{text!r}: key={key!r} takes an account and an optional change; {how}")
    out = []
    for piece in pieces:
        digits = piece[:-1] if piece.endswith("'") else piece
        if not digits.isdigit() or int(digits) >= HARDENED:
            raise InputError(
                f"{text!r}: key={key!r}: {piece!r} is not an index from 0 to {HARDENED - 1}; {how}"
            )
        out.append(int(digits) | HARDENED)  # Solana derives hardened keys only
    return tuple(out)


def format_path(path: tuple[int, ...]) -> str:
    return "/".join(f"{c & ~HARDENED}'" if c & HARDENED else str(c) for c in path)


def serialize_path(path: tuple[int, ...]) -> bytes:
    """The count byte and each component as 4 bytes big-endian."""
    return bytes([len(path)]) + b"".join(c.to_bytes(4, "big") for c in path)


def apdu(ins: int, p1: int, p2: int, data: bytes = b"") -> bytes:
    if len(data) > MAX_CHUNK:
        raise ValueError(f"APDU data of {len(data)} bytes: at most {MAX_CHUNK}")
    return bytes([CLA, ins, p1, p2, len(data)]) + data


def get_pubkey_apdu(path: tuple[int, ...], confirm: bool = False) -> bytes:
    return apdu(INS_GET_PUBKEY, P1_CONFIRM if confirm else P1_NON_CONFIRM, 0, serialize_path(path))


def sign_message_apdus(path: tuple[int, ...], message: bytes) -> list[bytes]:
    """SIGN_MESSAGE for one signer: ``1 | path | message`` cut into 255-byte APDUs."""
    if not message:
        raise InputError("an empty message cannot be signed")
    if len(message) > MAX_MESSAGE:
        raise InputError(f"a message of {len(message)} bytes is too long for the Ledger")
    payload = bytes([1]) + serialize_path(path) + message
    chunks = [payload[i : i + MAX_CHUNK] for i in range(0, len(payload), MAX_CHUNK)]
    out = []
    for i, chunk in enumerate(chunks):
        p2 = (P2_EXTEND if i else 0) | (P2_MORE if i < len(chunks) - 1 else 0)
        out.append(apdu(INS_SIGN_MESSAGE, P1_CONFIRM, p2, chunk))
    return out


def wrap(data: bytes, channel: int = CHANNEL) -> list[bytes]:
    """``data`` (an APDU, or an answer) as 64-byte HID reports, the last zero-padded."""
    if len(data) > 0xFFFF:
        raise ValueError("more than 65535 bytes cannot be framed")
    body = len(data).to_bytes(2, "big") + data
    reports = []
    seq = 0
    while seq == 0 or body:
        head = channel.to_bytes(2, "big") + bytes([TAG_APDU]) + seq.to_bytes(2, "big")
        take = REPORT_SIZE - len(head)
        reports.append((head + body[:take]).ljust(REPORT_SIZE, b"\0"))
        body = body[take:]
        seq += 1
    return reports


class Unwrapper:
    """Reassembles what ``wrap`` framed, one report at a time."""

    def __init__(self, channel: int = CHANNEL) -> None:
        self.channel = channel
        self._expected: int | None = None
        self._data = b""
        self._seq = 0

    def feed(self, report: bytes) -> bytes | None:
        """The whole data once its last report is fed, else None; ValueError on a report
        out of order or on another channel."""
        head = self.channel.to_bytes(2, "big") + bytes([TAG_APDU]) + self._seq.to_bytes(2, "big")
        if len(report) < len(head) + (2 if self._seq == 0 else 0) or report[:5] != head:
            raise ValueError(f"unexpected HID report {bytes(report[:7]).hex()} (want {head.hex()})")
        body = bytes(report[5:])
        if self._seq == 0:
            self._expected = int.from_bytes(body[:2], "big")
            body = body[2:]
        self._seq += 1
        assert self._expected is not None
        self._data += body
        if len(self._data) >= self._expected:
            return self._data[: self._expected]
        return None


def check_status(answer: bytes, doing: str) -> bytes:
    """The answer's data when its status word is 0x9000; else LedgerError saying what the
    status means and what to do."""
    if len(answer) < 2:
        raise LedgerError(f"the Ledger gave no status word while {doing}; {PLUG_IN}")
    status = int.from_bytes(answer[-2:], "big")
    if status == STATUS_OK:
        return answer[:-2]
    meaning = STATUS_WORDS.get(status, f"unknown status; {PLUG_IN}")
    raise LedgerError(f"Ledger status 0x{status:04X} while {doing}: {meaning}")


class ReportDevice(Protocol):
    """A HID device at the report level: what ``hid.device`` gives, and a stand-in."""

    def write(self, report: bytes) -> None: ...

    def read(self) -> bytes: ...

    def close(self) -> None: ...


class Ledger:
    """The Solana app on one device: exchanges APDUs through HID reports."""

    def __init__(self, device: ReportDevice) -> None:
        self.device = device

    def exchange(self, command: bytes) -> bytes:
        """The answer to one APDU, status word included."""
        for report in wrap(command):
            self.device.write(report)
        unwrapper = Unwrapper()
        while True:
            try:
                done = unwrapper.feed(self.device.read())
            except ValueError as exc:
                raise LedgerError(
                    f"the Ledger answered out of protocol ({exc}); {PLUG_IN}"
                ) from exc
            if done is not None:
                return done

    def pubkey(self, path: tuple[int, ...]) -> Pubkey:
        data = check_status(
            self.exchange(get_pubkey_apdu(path)), f"reading the key at {format_path(path)}"
        )
        if len(data) != 32:
            raise LedgerError(f"the Ledger answered {len(data)} bytes for a public key; {PLUG_IN}")
        return Pubkey.from_bytes(data)

    def sign(self, path: tuple[int, ...], message: bytes) -> Signature:
        """The device's signature over ``message`` (after the person confirms on it)."""
        doing = f"signing with {format_path(path)}"
        data = b""
        for command in sign_message_apdus(path, message):
            data = check_status(self.exchange(command), doing)
        if len(data) != 64:
            raise LedgerError(f"the Ledger answered {len(data)} bytes for a signature; {PLUG_IN}")
        return Signature.from_bytes(data)


class LedgerSigner:
    """One key on a Ledger as a signer: ``pubkey()`` and ``sign_message()`` like a Keypair.
    Every signature is checked against the key and message before it is returned, so a
    wrong answer never reaches the chain."""

    def __init__(
        self, ledger: Ledger, locator: Locator, prompt: Callable[[str], None] | None = None
    ) -> None:
        self.ledger = ledger
        self.locator = locator
        self.prompt = prompt
        if locator.wallet is not None:
            found = ledger.pubkey(SOLANA_ROOT)
            if found != locator.wallet:
                raise LedgerError(
                    f"the Ledger plugged in is wallet {found}, not {locator.wallet}; plug in "
                    "that Ledger, or leave the wallet out of the locator"
                )
        self._pubkey = ledger.pubkey(locator.path)

    def pubkey(self) -> Pubkey:
        return self._pubkey

    def sign_message(self, message: bytes) -> Signature:
        if self.prompt is not None:
            self.prompt(f"confirm on your Ledger ({self.locator.path_text}): check the message")
        signature = self.ledger.sign(self.locator.path, message)
        if not signature.verify(self._pubkey, message):
            raise LedgerError(
                f"the Ledger's signature does not verify with {self._pubkey} over the message; "
                "nothing was sent. Unplug and plug in the Ledger and try again"
            )
        return signature


class _HidapiDevice:
    """``hid.device`` as a ReportDevice: hidapi wants the report number (0) first."""

    def __init__(self, device: Any) -> None:
        self._device = device

    def write(self, report: bytes) -> None:
        self._device.write(b"\0" + report)

    def read(self) -> bytes:
        # Blocks while the person reads the message on the device (no timeout: they may
        # take minutes to scroll through it).
        return bytes(self._device.read(REPORT_SIZE))

    def close(self) -> None:
        self._device.close()


def open_hid() -> ReportDevice:
    """The first Ledger on USB, or LedgerError saying how to get one found."""
    try:
        import hid  # the `hidapi` package: optional, only a Ledger needs it
    except ImportError as exc:
        raise LedgerError(
            "signing with a Ledger needs the hidapi package: `uv sync --extra ledger` "
            "(or `pip install hidapi`); then " + PLUG_IN
        ) from exc
    found = [
        info
        for info in hid.enumerate(LEDGER_VENDOR_ID, 0)
        if info.get("usage_page") == LEDGER_USAGE_PAGE or info.get("interface_number") == 0
    ]
    if not found:
        raise LedgerError(
            f"no Ledger was found on USB; {PLUG_IN} (on Linux, install Ledger's udev rules)"
        )
    device = hid.device()
    try:
        device.open_path(found[0]["path"])
    except OSError as exc:
        raise LedgerError(
            f"the Ledger could not be opened ({exc}); {PLUG_IN}, and close Ledger Live or "
            "any other program using it"
        ) from exc
    return _HidapiDevice(device)


@contextlib.contextmanager
def connect(
    locator: Locator, device: ReportDevice, prompt: Callable[[str], None] | None = None
) -> Iterator[LedgerSigner]:
    """The signer at ``locator`` on ``device``; the device is closed afterwards."""
    try:
        yield LedgerSigner(Ledger(device), locator, prompt)
    finally:
        device.close()

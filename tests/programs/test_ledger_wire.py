"""The Ledger Solana app's wire format (programs/ledger.py): the APDUs equal what
LedgerHQ's ``@ledgerhq/hw-app-solana`` sends, the HID framing equals ``@ledgerhq/devices``',
byte for byte; locators parse as ``solana`` reads them; the signer talks to a stand-in
device at the HID report level, and every refusal says what to do."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from core.errors import InputError
from programs import ledger
from programs.ledger import HARDENED, Ledger, LedgerError, LedgerSigner, Locator
from tests.ledger_js import ledger_js
from tests.stand_ins.ledger_device import StandInLedger

H = HARDENED


@pytest.mark.parametrize(
    ("text", "wallet", "path"),
    [
        ("usb://ledger", None, (44 | H, 501 | H)),
        ("usb://ledger/", None, (44 | H, 501 | H)),
        ("usb://ledger?key=0", None, (44 | H, 501 | H, 0 | H)),
        ("usb://ledger?key=0/0", None, (44 | H, 501 | H, 0 | H, 0 | H)),
        ("usb://ledger?key=3'/1'", None, (44 | H, 501 | H, 3 | H, 1 | H)),
        ("USB://Ledger?key=7", None, (44 | H, 501 | H, 7 | H)),
    ],
)
def test_locators_parse_as_solana_reads_them(
    text: str, wallet: None, path: tuple[int, ...]
) -> None:
    assert ledger.parse_locator(text) == Locator(wallet, path)


def test_a_locator_names_its_wallet() -> None:
    key = Keypair().pubkey()
    assert ledger.parse_locator(f"usb://ledger/{key}?key=1/0") == Locator(
        key, (44 | H, 501 | H, 1 | H, 0 | H)
    )
    assert ledger.parse_locator(f"usb://ledger/{key}").path_text == "44'/501'"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("usb://ledger?key=x", "'x' is not an index from 0 to 2147483647"),
        ("usb://ledger?key=0/0/0", "takes an account and an optional change"),
        ("usb://ledger?key=-1", "'-1' is not an index"),
        ("usb://ledger?key=2147483648", "is not an index from 0 to 2147483647"),
        ("usb://ledger?key=", "'' is not an index"),
        ("usb://ledger?account=0", "unknown query account"),
        ("usb://ledger?key=0&key=1", "give key= once"),
        ("usb://trezor", "is not a Ledger locator"),
        ("usb://ledger/not-a-key", "is not a base58 public key"),
    ],
)
def test_malformed_locators_are_refused_with_the_syntax(text: str, reason: str) -> None:
    with pytest.raises(InputError) as refused:
        ledger.parse_locator(text)
    assert reason in str(refused.value)
    assert "usb://ledger?key=0" in str(refused.value)  # the fix


PATHS = ["44'/501'", "44'/501'/0'", "44'/501'/0'/0'", "44'/501'/2147483647'/12'"]


def _path(text: str) -> tuple[int, ...]:
    return tuple(int(piece.rstrip("'")) | H for piece in text.split("/"))


def test_get_pubkey_apdus_equal_hw_app_solanas() -> None:
    theirs = ledger_js([{"op": "get_address", "path": p} for p in PATHS])
    ours = [[ledger.get_pubkey_apdu(_path(p))] for p in PATHS]
    assert ours == theirs
    assert ours[1][0].hex() == "e00500000d038000002c800001f580000000"


# Around each chunk boundary: the first APDU holds 255 - 10 message bytes with a
# 2-component path (one signer byte, the count, 8 path bytes), 255 - 18 with 4, the next
# ones 255 each; 1232 is the largest transaction.
MESSAGE_SIZES = [1, 150, 236, 237, 238, 244, 245, 246, 492, 500, 1232]


@pytest.mark.parametrize("path", [PATHS[0], PATHS[2]])
def test_sign_message_apdus_equal_hw_app_solanas_short_and_chunked(path: str) -> None:
    messages = [bytes((i * 7 + n) % 256 for i in range(n)) for n in MESSAGE_SIZES]
    theirs = ledger_js([{"op": "sign", "path": path, "message": m.hex()} for m in messages])
    ours = [ledger.sign_message_apdus(_path(path), m) for m in messages]
    assert ours == theirs
    largest = ours[-1]
    assert all(len(a) == 5 + 255 for a in largest[:-1]) and len(largest) == 5
    # P2: MORE on all but the last, EXTEND on all but the first.
    assert [a[3] for a in largest] == [2, 3, 3, 3, 1]
    assert [len(a) for a in ours[0]] == [5 + 2 + 4 * path.count("/") + 4 + 1]


def test_hid_framing_equals_ledgerhq_devices() -> None:
    apdus = [
        ledger.get_pubkey_apdu(_path(PATHS[1])),
        *ledger.sign_message_apdus(_path(PATHS[2]), bytes(range(256)) * 3),
        bytes(57),  # 2 + 57 fills the first report exactly
        bytes(58),
        b"",
    ]
    theirs = ledger_js([{"op": "frame", "apdu": a.hex()} for a in apdus])
    ours = [ledger.wrap(a) for a in apdus]
    assert ours == theirs
    for apdu, reports in zip(apdus, ours, strict=True):
        unwrapper = ledger.Unwrapper()
        results = [unwrapper.feed(r) for r in reports]
        assert results[-1] == apdu and all(r is None for r in results[:-1])


def test_a_report_out_of_order_or_on_another_channel_is_refused() -> None:
    reports = ledger.wrap(bytes(200))
    with pytest.raises(ValueError, match="unexpected HID report"):
        ledger.Unwrapper().feed(reports[1])
    with pytest.raises(ValueError, match="unexpected HID report"):
        ledger.Unwrapper().feed(ledger.wrap(b"x", channel=0x0202)[0])


def test_the_signer_reads_its_key_and_signs_verifiably() -> None:
    device = StandInLedger()
    with ledger.connect(ledger.parse_locator("usb://ledger?key=2/1"), device) as signer:
        assert signer.pubkey() == device.key(2, 1).pubkey()
        message = bytes(range(256)) * 2  # three APDUs
        signature = signer.sign_message(message)
    assert signature.verify(device.key(2, 1).pubkey(), message)
    assert device.signed == [message] and device.closed
    # The APDUs the device received are the JS client's.
    assert (
        device.apdus[1:]
        == ledger_js([{"op": "sign", "path": "44'/501'/2'/1'", "message": message.hex()}])[0]
    )


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"refuse": True}, "0x6985 while signing with 44'/501'/0': you refused it on the Ledger"),
        ({"tamper": True}, "does not verify with"),
    ],
)
def test_a_refused_or_wrong_signature_is_an_error(setup: dict[str, bool], reason: str) -> None:
    device = StandInLedger()
    for name, value in setup.items():
        setattr(device, name, value)
    signer = LedgerSigner(Ledger(device), ledger.parse_locator("usb://ledger?key=0"))
    with pytest.raises(LedgerError) as refused:
        signer.sign_message(b"\x01" + bytes(100))
    assert reason in str(refused.value)
    assert "nothing was sent" in str(refused.value) or "nothing was signed" in str(refused.value)


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("dashboard", "the Solana app is not open on the Ledger; open it"),
        ("bitcoin", "the Solana app is not open on the Ledger; open it"),
        ("locked", "the Ledger is locked; unlock it with your PIN"),
    ],
)
def test_wrong_app_or_locked_device_says_what_to_do(app: str, reason: str) -> None:
    device = StandInLedger(app=app)
    with pytest.raises(LedgerError) as refused:  # noqa: SIM117
        with ledger.connect(ledger.parse_locator("usb://ledger"), device):
            pass
    assert reason in str(refused.value) and "reading the key at 44'/501'" in str(refused.value)
    assert device.closed and device.signed == []


def test_another_wallet_than_the_locator_names_is_refused() -> None:
    device = StandInLedger()
    other = StandInLedger(seed=b"another").key().pubkey()
    with pytest.raises(LedgerError) as refused:
        LedgerSigner(Ledger(device), ledger.parse_locator(f"usb://ledger/{other}"))
    assert f"is wallet {device.key().pubkey()}, not {other}" in str(refused.value)
    right = LedgerSigner(
        Ledger(device), ledger.parse_locator(f"usb://ledger/{device.key().pubkey()}?key=0")
    )
    assert right.pubkey() == device.key(0).pubkey()


def test_without_hidapi_the_error_says_how_to_install_it() -> None:
    try:
        import hid  # noqa: F401
    except ImportError:
        with pytest.raises(LedgerError) as refused:
            ledger.open_hid()
        message = str(refused.value)
        assert "needs the hidapi package: `uv sync --extra ledger`" in message
        assert "unlock it and open the Solana app" in message
    else:
        pytest.skip("hidapi is installed here; the missing-module message is not reachable")

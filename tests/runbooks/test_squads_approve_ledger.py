"""`runbooks squads approve --keypair usb://ledger` against a localnet holding a Multisig
and its Proposals as the official SDK serializes them, with a stand-in Ledger at the USB
HID report level (tests/stand_ins/ledger_device.py) in place of the device: the member key
is read from the device, the vote (equal to the SDK's) is signed on it and verifies; a
refusal on the device, the wrong app, a key that is not a member or a malformed locator
each end with the reason and nothing signed or sent."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction

from localnet import LocalnetServer
from programs.squads import client as squads
from runbooks import squads as approve_cmd
from tests.squads_localnet import (
    PlacedMultisig,
    approve_command,
    place_multisig,
    sdk_vote,
    squads_binary,
    vote_args,
)
from tests.squads_sdk import described
from tests.stand_ins.ledger_device import StandInLedger

ALL = int(squads.ALL_PERMISSIONS)
NOW = 1_760_000_000


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> StandInLedger:
    """The stand-in plugged in: the command's HID opener hands it out."""
    plugged = StandInLedger(seed=Keypair().secret())
    monkeypatch.setattr(approve_cmd, "ledger_device", lambda: plugged)
    return plugged


@pytest.fixture
def ms(server: LocalnetServer, device: StandInLedger) -> PlacedMultisig:
    """Members: the Ledger's 44'/501'/0' key and two keypairs."""
    placed = place_multisig(
        server.localnet,
        [(device.key(0), ALL), (Keypair(), ALL), (Keypair(), ALL)],
        threshold=2,
        time_lock=0,
    )
    placed.stage_proposal(1, "Active", NOW)
    placed.stage_proposal(2, "Approved", NOW, approved=[device.key(0).pubkey()])
    placed.put()
    return placed


@pytest.mark.parametrize(
    ("flag", "index", "builder", "sdk_name"),
    [
        (None, 1, squads.proposal_approve, "proposalApprove"),
        ("--reject", 1, squads.proposal_reject, "proposalReject"),
        ("--cancel", 2, squads.proposal_cancel, "proposalCancel"),
    ],
)
def test_the_ledger_signs_the_sdks_vote_and_its_signature_verifies(
    server: LocalnetServer,
    ms: PlacedMultisig,
    device: StandInLedger,
    capsys: pytest.CaptureFixture[str],
    flag: str | None,
    index: int,
    builder: object,
    sdk_name: str,
) -> None:
    member = device.key(0).pubkey()
    argv = [*vote_args(server.url, ms, index), "--keypair", "usb://ledger?key=0"]
    argv += ["--print-only", "--signed", *([flag] if flag else [])]
    before = server.localnet.transaction_count
    rc, out, text = approve_command(capsys, *argv)
    assert rc == 0, text
    assert out["member"] == str(member) and out["signer"] == "Ledger 44'/501'/0'"
    assert "confirm on your Ledger (44'/501'/0')" in text
    tx = Transaction.from_bytes(base64.b64decode(out["transaction"]))
    ix = builder(multisig=ms.address, transaction_index=index, member=member, memo=None)  # type: ignore[operator]
    assert described(ix) == sdk_vote(sdk_name, ms, index, member)
    # Exactly the vote, paid by the member: the one signature the message needs.
    assert tx.message == Message.new_with_blockhash([ix], member, tx.message.recent_blockhash)
    assert tx.message.header.num_required_signatures == 1
    tx.verify()
    (signature,) = tx.signatures
    assert signature.verify(member, bytes(tx.message_data()))
    assert device.signed == [bytes(tx.message_data())] and device.closed
    assert server.localnet.transaction_count == before  # printed, not sent


def test_the_default_path_and_a_named_wallet(
    server: LocalnetServer,
    device: StandInLedger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = device.key()  # 44'/501', the key `usb://ledger` means
    placed = place_multisig(server.localnet, [(root, ALL), (Keypair(), ALL)], threshold=1)
    placed.put_proposal(1, "Active", NOW)
    locator = f"usb://ledger/{root.pubkey()}"
    rc, out, text = approve_command(
        capsys, *vote_args(server.url, placed, 1), "--keypair", locator, "--print-only", "--signed"
    )
    assert rc == 0, text
    assert out["member"] == str(root.pubkey()) and out["signer"] == "Ledger 44'/501'"
    Transaction.from_bytes(base64.b64decode(out["transaction"])).verify()


def test_sending_asks_the_device_only_for_a_vote_that_passes_preflight(
    server: LocalnetServer,
    ms: PlacedMultisig,
    device: StandInLedger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The checks pass; the localnet has no Squads program, so the simulation before
    signing refuses the vote: the person is never asked to confirm, nothing lands."""
    server.localnet.airdrop(device.key(0).pubkey(), 10**9)
    before = server.localnet.transaction_count
    rc, out, text = approve_command(
        capsys, *vote_args(server.url, ms, 1), "--keypair", "usb://ledger?key=0"
    )
    assert rc == 2 and "signature" not in out, text
    assert "InvalidProgramForExecution" in text, text
    assert device.signed == [] and device.closed
    assert server.localnet.transaction_count == before


def _apdus_signed(device: StandInLedger) -> int:
    return sum(1 for apdu in device.apdus if apdu[1] == 0x06)


@pytest.mark.parametrize(
    ("setup", "locator", "reason", "asked_to_sign"),
    [
        ({"refuse": True}, "usb://ledger?key=0", "0x6985", True),
        ({"app": "dashboard"}, "usb://ledger?key=0", "the Solana app is not open", False),
        ({"app": "bitcoin"}, "usb://ledger?key=0", "the Solana app is not open", False),
        ({"app": "locked"}, "usb://ledger?key=0", "the Ledger is locked; unlock it", False),
        ({}, "usb://ledger?key=5", "is not a member of multisig", False),
        ({"tamper": True}, "usb://ledger?key=0", "does not verify with", True),
    ],
)
@pytest.mark.parametrize("print_only", [True, False])
def test_device_refusals_and_non_members_send_nothing(
    server: LocalnetServer,
    ms: PlacedMultisig,
    device: StandInLedger,
    capsys: pytest.CaptureFixture[str],
    setup: dict[str, object],
    locator: str,
    reason: str,
    asked_to_sign: bool,
    print_only: bool,
) -> None:
    for name, value in setup.items():
        setattr(device, name, value)
    server.localnet.airdrop(device.key(0).pubkey(), 10**9)
    before = server.localnet.transaction_count
    extra = ["--print-only", "--signed"] if print_only else []
    rc, out, text = approve_command(
        capsys, *vote_args(server.url, ms, 1), "--keypair", locator, *extra
    )
    # The device is asked to sign only where the vote gets that far: printing signs without
    # a simulation; sending simulates first, refused here (no Squads program) before it.
    signing = asked_to_sign and print_only
    expected = reason if signing or not asked_to_sign else "InvalidProgramForExecution"
    assert rc == 2 and expected in text, text
    assert "transaction" not in out and "signature" not in out and "signed" not in out
    assert device.signed == [] and device.closed
    assert bool(_apdus_signed(device)) == signing
    assert server.localnet.transaction_count == before


@pytest.mark.parametrize(
    ("locator", "reason"),
    [
        ("usb://ledger?key=x", "key='x': 'x' is not an index from 0 to 2147483647"),
        ("usb://ledger?key=0/0/0", "takes an account and an optional change"),
        ("usb://ledger/nope", "'nope' after usb://ledger/ is not a base58 public key"),
        ("usb://trezor", "is not a Ledger locator"),
    ],
)
def test_a_malformed_locator_is_refused_before_the_device_is_opened(
    server: LocalnetServer,
    ms: PlacedMultisig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    locator: str,
    reason: str,
) -> None:
    opened: list[bool] = []
    monkeypatch.setattr(approve_cmd, "ledger_device", lambda: opened.append(True))
    before = server.localnet.transaction_count
    rc, out, text = approve_command(capsys, *vote_args(server.url, ms, 1), "--keypair", locator)
    assert rc == 2 and reason in text and "usb://ledger?key=0" in text, text
    assert opened == [] and "member" not in out
    assert server.localnet.transaction_count == before


def test_no_ledger_reachable_says_how_to_get_one(
    server: LocalnetServer,
    ms: PlacedMultisig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real opener (hidapi) on a machine without hidapi or without a device."""
    from programs import ledger

    monkeypatch.setattr(approve_cmd, "ledger_device", ledger.open_hid)
    before = server.localnet.transaction_count
    rc, out, text = approve_command(
        capsys, *vote_args(server.url, ms, 1), "--keypair", "usb://ledger"
    )
    assert rc == 2 and "member" not in out, text
    assert "plug in your Ledger, unlock it and open the Solana app" in text, text
    assert "hidapi" in text or "no Ledger was found" in text or "could not be opened" in text
    assert server.localnet.transaction_count == before


def test_a_ledger_vote_lands_with_the_real_squads_program(
    device: StandInLedger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    binary = squads_binary()
    with LocalnetServer(port=0) as real:
        net = real.localnet
        net.deploy_upgradeable(squads.PROGRAM_ID, binary, Keypair())
        member = device.key(0).pubkey()
        net.airdrop(member, 10**9)
        placed = place_multisig(net, [(member, ALL), (Keypair(), ALL)], threshold=2, time_lock=0)
        placed.put_proposal(1, "Active", NOW)
        rc, out, text = approve_command(
            capsys, *vote_args(real.url, placed, 1), "--keypair", "usb://ledger?key=0"
        )
        assert rc == 0 and out["signature"], text
        account = net.get_account(squads.proposal_pda(placed.address, 1)[0])
        assert account is not None
        assert member in squads.decode_proposal(bytes(account.data)).approved
        assert len(device.signed) == 1

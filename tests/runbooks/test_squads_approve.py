"""`runbooks squads approve` against a localnet holding a Multisig and its Proposals as the
official SDK serializes them: the vote it builds equals the SDK's, signed by the member;
every vote the program would refuse is refused here first, nothing signed or sent."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.signature import Signature
from solders.transaction import Transaction

from core.keys import keypair_to_json
from localnet import LocalnetServer
from programs.squads import client as squads
from tests.squads_localnet import (
    PlacedMultisig,
    approve_command,
    place_multisig,
    sdk_vote,
    squads_binary,
    vote_args,
)
from tests.squads_sdk import described

ALL = int(squads.ALL_PERMISSIONS)
NO_VOTE = int(squads.Permission.INITIATE | squads.Permission.EXECUTE)
NOW = 1_760_000_000


@pytest.fixture(scope="module")
def server() -> Iterator[LocalnetServer]:
    with LocalnetServer(port=0) as srv:
        yield srv


@pytest.fixture
def people() -> dict[str, Keypair]:
    return {"alice": Keypair(), "bob": Keypair(), "runbook": Keypair(), "outsider": Keypair()}


@pytest.fixture
def ms(server: LocalnetServer, people: dict[str, Keypair]) -> PlacedMultisig:
    placed = place_multisig(
        server.localnet,
        [(people["alice"], ALL), (people["bob"], ALL), (people["runbook"], NO_VOTE)],
        threshold=2,
        time_lock=60,
    )
    placed.stage_proposal(1, "Active", NOW)
    placed.stage_proposal(2, "Approved", NOW, approved=[people["alice"].pubkey()])
    placed.stage_proposal(3, "Executed", NOW)
    placed.put()
    return placed


def keyfile(tmp_path: Path, kp: Keypair) -> str:
    path = tmp_path / f"{kp.pubkey()}.json"
    path.write_text(keypair_to_json(kp))
    return str(path)


@pytest.mark.parametrize(
    ("flag", "index", "sdk_name", "memo"),
    [
        (None, 1, "proposalApprove", None),
        (None, 1, "proposalApprove", "ship v2"),
        ("--reject", 1, "proposalReject", "not yet"),
        ("--cancel", 2, "proposalCancel", None),
    ],
)
def test_the_vote_equals_the_sdks_and_is_signed_by_the_member(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str | None,
    index: int,
    sdk_name: str,
    memo: str | None,
) -> None:
    alice = people["alice"]
    secret = keyfile(tmp_path, alice)
    argv = [*vote_args(server.url, ms, index), "--keypair", secret, "--print-only", "--signed"]
    argv += [flag] if flag else []
    argv += ["--memo", memo] if memo else []
    rc, out, text = approve_command(capsys, *argv)
    assert rc == 0, text
    tx = Transaction.from_bytes(base64.b64decode(out["transaction"]))
    assert tx.message.account_keys[0] == alice.pubkey()  # the member pays its own vote
    (compiled,) = tx.message.instructions
    decoded = _decompile(tx)
    assert described(decoded) == sdk_vote(sdk_name, ms, index, alice.pubkey(), memo)
    (signature,) = tx.signatures
    assert signature.verify(alice.pubkey(), bytes(tx.message_data()))
    tx.verify()  # every required signature present and valid
    assert compiled.program_id_index == list(tx.message.account_keys).index(squads.PROGRAM_ID)
    # The key file's secret never reaches the output.
    assert bytes(alice)[:32].hex() not in text and str(alice) not in text


def _decompile(tx: Transaction):  # type: ignore[no-untyped-def]
    from solders.instruction import AccountMeta, Instruction

    message = tx.message
    keys = list(message.account_keys)
    (compiled,) = message.instructions
    h = message.header
    signers = h.num_required_signatures

    def writable(i: int) -> bool:  # from the header, as the runtime reads it
        if i < signers:
            return i < signers - h.num_readonly_signed_accounts
        return i < len(keys) - h.num_readonly_unsigned_accounts

    metas = [
        AccountMeta(keys[i], is_signer=i < signers, is_writable=writable(i))
        for i in bytes(compiled.accounts)
    ]
    return Instruction(keys[compiled.program_id_index], bytes(compiled.data), metas)


def test_print_only_is_unsigned_by_default_and_member_needs_no_keyfile(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bob = people["bob"]
    for who in (["--keypair", keyfile(tmp_path, bob)], ["--member", str(bob.pubkey())]):
        rc, out, text = approve_command(capsys, *vote_args(server.url, ms, 1), *who, "--print-only")
        assert rc == 0, text
        assert out["signed"] == "no"
        tx = Transaction.from_bytes(base64.b64decode(out["transaction"]))
        assert list(tx.signatures) == [Signature.default()]  # a slot for the member
        assert described(_decompile(tx)) == sdk_vote("proposalApprove", ms, 1, bob.pubkey(), None)


def sent_nothing(server: LocalnetServer, before: int) -> bool:
    return server.localnet.transaction_count == before


@pytest.mark.parametrize(
    ("who", "index", "extra", "reason"),
    [
        ("outsider", 1, [], "is not a member of multisig"),
        ("runbook", 1, [], "without the Vote permission"),
        ("alice", 2, [], "proposal 2 is Approved; approve needs it Active"),
        ("alice", 3, ["--reject"], "proposal 3 is Executed; reject needs it Active"),
        ("bob", 1, ["--cancel"], "proposal 1 is Active; cancel needs it Approved"),
        ("alice", 2, ["--cancel", "--memo", "x"], None),  # control: allowed (print-only)
        ("alice", 7, [], "has no proposal for transaction 7"),
    ],
)
def test_votes_the_program_would_refuse_are_refused_before_signing(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    who: str,
    index: int,
    extra: list[str],
    reason: str | None,
) -> None:
    before = server.localnet.transaction_count
    args = [*vote_args(server.url, ms, index), "--keypair", keyfile(tmp_path, people[who]), *extra]
    if reason is None:
        rc, _, text = approve_command(capsys, *args, "--print-only")
        assert rc == 0, text
        return
    rc, out, text = approve_command(capsys, *args)
    assert rc == 2 and reason in text, text
    assert "signature" not in out and "transaction" not in out
    assert sent_nothing(server, before)


def test_a_second_vote_by_the_same_member_is_refused(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = people["alice"]
    ms.put_proposal(4, "Active", NOW, approved=[alice.pubkey()])
    rc, _, text = approve_command(
        capsys, *vote_args(server.url, ms, 4), "--keypair", keyfile(tmp_path, alice)
    )
    assert rc == 2 and "has already approved proposal 4" in text


def test_a_stale_proposal_is_refused(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ms.stale_transaction_index = 1
    ms.put()
    rc, _, text = approve_command(
        capsys, *vote_args(server.url, ms, 1), "--keypair", keyfile(tmp_path, people["alice"])
    )
    assert rc == 2 and "proposal 1 is stale" in text, text


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--keypair", "usb://ledger?key=x"], "key='x': 'x' is not an index from 0 to"),
        (["--keypair", "usb://ledger", "--member", "11111111111111111111111111111111"], "give one"),
        (["--keypair", "/nonexistent/id.json"], "cannot be read"),
        (["--member", "11111111111111111111111111111111"], "--member signs nothing"),
        (["--keypair", "K", "--signed"], "--signed goes with --print-only"),
    ],
)
def test_bad_signers_are_refused_before_reading_anything(
    server: LocalnetServer,
    ms: PlacedMultisig,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    reason: str,
) -> None:
    before = server.localnet.transaction_count
    rc, out, text = approve_command(capsys, *vote_args(server.url, ms, 1), *argv)
    assert rc == 2 and reason in text, text
    assert "transaction" not in out and sent_nothing(server, before)


def test_bad_addresses_and_indexes_are_refused(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = ["--keypair", keyfile(tmp_path, people["alice"]), "--url", server.url]
    cases = [
        (["--multisig", "not-an-address", "--transaction-index", "1"], "--multisig"),
        (["--multisig", str(ms.address), "--transaction-index", "0"], "numbers transactions"),
        # An address where nothing lives, and one owned by another program.
        (["--multisig", str(Keypair().pubkey()), "--transaction-index", "1"], "no account at"),
        (["--multisig", str(people["alice"].pubkey()), "--transaction-index", "1"], None),
    ]
    server.localnet.airdrop(people["alice"].pubkey(), 10**9)
    before = server.localnet.transaction_count
    for argv, reason in cases:
        rc, _, text = approve_command(capsys, *key, *argv)
        assert rc == 2, text
        assert (reason or "not the Squads program") in text, text
    assert sent_nothing(server, before)


def test_sending_without_the_squads_program_is_refused_by_the_runtime(
    server: LocalnetServer,
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The checks pass and the vote is sent; the localnet has no Squads program, so the
    runtime refuses it in preflight and nothing lands."""
    alice = people["alice"]
    server.localnet.airdrop(alice.pubkey(), 10**9)
    before = server.localnet.transaction_count
    rc, out, text = approve_command(
        capsys, *vote_args(server.url, ms, 1), "--keypair", keyfile(tmp_path, alice)
    )
    assert rc == 2 and "signature" not in out, text
    assert "transaction refused" in text and "InvalidProgramForExecution" in text, text
    assert sent_nothing(server, before)


def test_approve_lands_with_the_real_squads_program(
    ms: PlacedMultisig,
    people: dict[str, Keypair],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    binary = squads_binary()
    with LocalnetServer(port=0) as real:
        net = real.localnet
        net.deploy_upgradeable(squads.PROGRAM_ID, binary, Keypair())
        alice = people["alice"]
        net.airdrop(alice.pubkey(), 10**9)
        placed = place_multisig(net, ms.members, threshold=2, time_lock=0)
        placed.put_proposal(1, "Active", NOW)  # writes the multisig too
        rc, out, text = approve_command(
            capsys,
            *vote_args(real.url, placed, 1),
            "--keypair",
            keyfile(tmp_path, alice),
        )
        assert rc == 0 and out["signature"], text
        account = net.get_account(squads.proposal_pda(placed.address, 1)[0])
        assert account is not None
        assert alice.pubkey() in squads.decode_proposal(bytes(account.data)).approved

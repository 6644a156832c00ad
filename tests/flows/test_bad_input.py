"""Bad input, swept: every CLI argument, flow parameter, block field and sign-off form entry
below is refused with a message that names the field and says what to do, and where a
flow is involved, nothing is recorded and nothing is sent.

Validation is called in-process (the CLI's ``main``, the flows themselves against one
shared localnet and Prefect API, the blocks and forms directly) so the sweep stays fast.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select

from blocks import MultisigPolicy, SlackChannel, SolanaCluster, SolanaKeypair
from blocks.program_pause import ProgramPause
from core import approval
from core.errors import InputError, RecordsError, RunbookError
from core.keys import keypair_to_json
from domain import signoff
from domain.policy import Member, Policy, audit, check_description
from flows._signoff import SignOff
from flows.key_rotation import rotate_upgrade_authority
from flows.kill_switch import kill_switch
from flows.migration import migrate_accounts
from flows.rollback import emergency_rollback
from flows.upgrade import upgrade_program
from localnet.cli import main as localnet_main
from runbooks.cli import main as runbooks_cli
from runbooks.demo import DemoChain, save_blocks, start_demo_chain, write_buffer
from store.db import create_engine, migrate
from store.models import Base
from tasks.records import records_engine

SHA = "ab" * 32

# --- Shared state: one localnet, one set of blocks, one records database --------------


@pytest.fixture(scope="module")
def bad_chain(demo_binaries: dict[str, bytes]) -> Iterator[DemoChain]:
    chain = start_demo_chain(binaries=demo_binaries)
    yield chain
    chain.server.stop()


@pytest.fixture(scope="module")
async def names(
    prefect_api: None, bad_chain: DemoChain, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    saved = await save_blocks(bad_chain, prefix="bad-input", timelock_seconds=2)
    # A keypair block holding no keypair, and a pause block of another program.
    await SolanaKeypair(secret_key="[1, 2, 3]").asave("bad-input-broken-key", overwrite=True)
    await ProgramPause.for_program(Keypair().pubkey(), Keypair().pubkey(), Keypair()).asave(
        "bad-input-other-pause", overwrite=True
    )
    new_key = Keypair()
    await SolanaKeypair.from_keypair(new_key).asave("bad-input-new-key", overwrite=True)
    saved["new_authority"] = str(new_key.pubkey())
    saved["buffer"] = str(await write_buffer(bad_chain, bad_chain.binaries["v2"]))
    v2_file = tmp_path_factory.mktemp("bad-input-so") / "vault.so"
    v2_file.write_bytes(bad_chain.binaries["v2"])
    saved[V2_SO] = str(v2_file)
    # The same policy on the Squads backend: the upgrade, the rotation and the rollback
    # refuse it because it names no multisig; never run as the keypair backend.
    policy = await MultisigPolicy.aload(saved["policy_block"])
    squads = MultisigPolicy.model_validate({**policy.model_dump(), "backend": "squads"})
    await squads.asave(SQUADS_POLICY, overwrite=True)
    return saved


@pytest.fixture(scope="module")
def records_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'records.db'}"
    migrate(url)
    return url


@pytest.fixture
def records(records_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", records_url)
    return records_engine()


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def refused(exc: BaseException, *words: str) -> None:
    """The message names the field and the fix (each of ``words``, case-insensitive)."""
    text = str(exc)
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"


# --- CLI: runbooks sign, runbooks metrics, python -m localnet --------------------------


@pytest.fixture
def keyfile(tmp_path: Path) -> str:
    path = tmp_path / "member.json"
    path.write_text(keypair_to_json(Keypair()))
    return str(path)


LINE = approval.ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal=7,
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256=SHA,
    cluster=str(Keypair().pubkey()),
).message("approve")

SIGN_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("empty message", ["--message", ""], ("not an approval line", "copy the whole line")),
    ("blank message", ["--message", "   "], ("not an approval line", "copy")),
    ("prose message", ["--message", "please approve"], ("not an approval line", "copy")),
    ("cut-off line", ["--message", LINE[:90]], ("cut", "copy")),
    ("edited action", ["--message", LINE.replace("approve", "approv")], ("action:", "one of")),
    ("non-ascii line", ["--message", LINE + " é"], ("plain ascii",)),
    ("proposal zero", ["--proposal", "0"], ("--proposal", "positive", "pause form")),
    ("proposal negative", ["--proposal", "-4"], ("--proposal", "positive")),
    ("onchain without url", ["--onchain-proposal", str(Keypair().pubkey())], ("--url",)),
    (
        "onchain not base58",
        ["--onchain-proposal", "0xdead", "--url", "http://127.0.0.1:1"],
        ("--onchain-proposal", "base58"),
    ),
]


@pytest.mark.parametrize(("case", "argv", "words"), SIGN_CASES, ids=[c[0] for c in SIGN_CASES])
def test_sign_cli_refuses(
    case: str,
    argv: list[str],
    words: tuple[str, ...],
    keyfile: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'member.db'}")
    assert runbooks_cli(["sign", *argv, "--keypair", keyfile]) == 2
    out, err = capsys.readouterr()
    assert "signature:" not in out and "proposal None" not in err
    refused(Exception(err), "runbooks sign:", *words)
    assert not (tmp_path / "member.db").exists()  # nothing created by a refusal


@pytest.mark.parametrize(
    ("case", "keypair", "words"),
    [
        ("missing keypair file", "absent.json", ("keypair file", "cannot be read")),
        ("keypair file not json", "text", ("keypair file", "solana-keygen new")),
        ("keypair of 3 bytes", "[1,2,3]", ("keypair file", "64 integers")),
    ],
)
def test_sign_cli_refuses_a_bad_keypair_file(
    case: str,
    keypair: str,
    words: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "absent.json"
    if keypair != "absent.json":
        path = tmp_path / "key.json"
        path.write_text(keypair)
    assert runbooks_cli(["sign", "--message", LINE, "--keypair", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "signature:" not in out
    refused(Exception(err), *words)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["sign", "--proposal", "seven", "--keypair", "k.json"], ("--proposal", "invalid int")),
        (["sign", "--proposal", "1", "--keypair", "k", "--action", "ok"], ("--action", "choice")),
        (["sign", "--keypair", "k.json"], ("one of the arguments", "--proposal")),
        (["metrics", "--port", "http"], ("--port", "invalid int")),
        (["demo", "--scenario", "everything"], ("--scenario", "choice")),
    ],
)
def test_cli_usage_errors_name_the_option(
    argv: list[str], words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        runbooks_cli(argv)
    assert info.value.code == 2
    refused(Exception(capsys.readouterr().err), *words)


@pytest.mark.parametrize(
    ("env", "argv", "words"),
    [
        ({"RUNBOOKS_METRICS_PORT": "http"}, [], ("RUNBOOKS_METRICS_PORT", "0-65535")),
        ({"RUNBOOKS_METRICS_PORT": "70000"}, [], ("RUNBOOKS_METRICS_PORT", "0-65535")),
        ({}, ["--port", "70000"], ("--port", "0-65535")),
        ({}, ["--port", "-1"], ("--port", "0-65535")),
        (
            {"DATABASE_URL": "sqlite:////nonexistent/records.db", "RUNBOOKS_CREATE_DATABASE": ""},
            ["--port", "0"],
            ("DATABASE_URL", "does not exist", "RUNBOOKS_CREATE_DATABASE=1"),
        ),
    ],
)
def test_metrics_cli_refuses(
    env: dict[str, str],
    argv: list[str],
    words: tuple[str, ...],
    records_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", records_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert runbooks_cli(["metrics", *argv]) == 2
    refused(Exception(capsys.readouterr().err), *words)


def _localnet_cases(tmp: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    return [
        (["--port", "99999"], ("--port", "0")),
        (["--port", "-1"], ("--port",)),
        (["--port", "eighty"], ("--port",)),
        (["--port", "0", "--ready-file", str(tmp / "no" / "dir" / "url")], ("--ready-file",)),
        (["--port", "0", "--ready-file", str(tmp)], ("--ready-file", "folder")),
        (["--port", "0", "--authority", str(tmp / "absent.json")], ("keypair file",)),
        (["--port", "0", "--program", "no-equals-sign"], ("program",)),
    ]


@pytest.mark.parametrize("n", range(7))
def test_localnet_cli_refuses(n: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, words = _localnet_cases(tmp_path)[n]
    try:
        rc = localnet_main(argv)
    except SystemExit as exc:  # argparse's own usage error
        rc = exc.code
    assert rc == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "http://" not in out  # nothing served
    refused(Exception(err), *words)


# --- Environment and the records database ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RUNBOOKS_PAUSE_POLL_SECONDS", "soon"),
        ("RUNBOOKS_INLINE_TIMELOCK_SECONDS", "15m"),
        ("RUNBOOKS_CREATE_DATABASE", "perhaps"),
    ],
)
def test_environment_variables_that_do_not_parse_are_named(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import settings

    monkeypatch.setenv(name, value)
    with pytest.raises(InputError) as info:
        settings()
    refused(info.value, "environment variable", "fix or unset it")
    assert name.lower().removeprefix("runbooks_") in str(info.value).lower()


def test_an_explicit_database_url_that_does_not_exist_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo" / "records.db"
    monkeypatch.delenv("RUNBOOKS_CREATE_DATABASE", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    with pytest.raises(RecordsError) as info:
        records_engine()
    refused(info.value, "DATABASE_URL", "does not exist", "RUNBOOKS_CREATE_DATABASE=1")
    assert not missing.exists() and not missing.parent.exists()
    # The explicit way to start one: RUNBOOKS_CREATE_DATABASE=1.
    monkeypatch.setenv("RUNBOOKS_CREATE_DATABASE", "1")
    assert row_counts(records_engine())["proposals"] == 0
    assert missing.is_file()


def test_an_explicit_database_that_was_never_migrated_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    monkeypatch.delenv("RUNBOOKS_CREATE_DATABASE", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{empty}")
    with pytest.raises(RecordsError) as info:
        records_engine()
    refused(info.value, "DATABASE_URL", "never migrated", "RUNBOOKS_CREATE_DATABASE=1")
    engine = create_engine(f"sqlite:///{empty}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", ("does not parse", "DATABASE_URL")),
        ("mysql://root@localhost/records", ("cannot use", "DATABASE_URL")),
    ],
)
def test_database_urls_that_cannot_be_used_are_named(
    url: str, words: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(RecordsError) as info:
        records_engine()
    refused(info.value, *words)


# --- Blocks ----------------------------------------------------------------------------

BLOCK_CASES: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("no rpc urls", lambda: SolanaCluster(rpc_urls=[]), ("rpc_urls", "at least 1")),
    ("ftp rpc url", lambda: SolanaCluster(rpc_urls=["ftp://x"]), ("rpc_urls", "http(s)")),
    ("rpc url no host", lambda: SolanaCluster(rpc_urls=["http://"]), ("rpc_urls", "host")),
    ("rpc url prose", lambda: SolanaCluster(rpc_urls=["localhost 8899"]), ("rpc_urls", "https://")),
    ("commitment", lambda: SolanaCluster(commitment="final"), ("commitment", "finalized")),
    (
        "negative fee cap",
        lambda: SolanaCluster(max_priority_fee_micro_lamports=-1),
        ("max_priority_fee_micro_lamports", "greater than or equal to 0"),
    ),
    ("cluster name", lambda: SolanaCluster(cluster="Main Net"), ("cluster", "mainnet-beta")),
    ("explorer", lambda: SolanaCluster(explorer_url="https://x/"), ("explorer_url", "{address}")),
    ("slack channel", lambda: SlackChannel(bot_token="t", channel=" "), ("channel", "#ops")),
    ("slack space", lambda: SlackChannel(bot_token="t", channel="ops up"), ("channel", "C0123")),
    (
        "slack api",
        lambda: SlackChannel(bot_token="t", channel="#ops", api_base_url="slack.com"),
        ("api_base_url", "https://slack.com/api/"),
    ),
    (
        "threshold zero",
        lambda: MultisigPolicy(members=[], threshold=0, timelock_seconds=0),
        ("threshold", "greater than or equal to 1"),
    ),
    (
        "negative timelock",
        lambda: MultisigPolicy(members=[], threshold=1, timelock_seconds=-5),
        ("timelock_seconds", "greater than or equal to 0"),
    ),
    (
        "sign-off window",
        lambda: MultisigPolicy(
            members=[], threshold=1, timelock_seconds=0, signoff_timeout_seconds=0
        ),
        ("signoff_timeout_seconds", "greater than or equal to 1"),
    ),
    (
        "backend",
        lambda: MultisigPolicy(members=[], threshold=1, timelock_seconds=0, backend="sq"),
        ("backend", "keypair", "onchain"),
    ),
    ("member key", lambda: Member(pubkey=None), ("pubkey",)),
]


@pytest.mark.parametrize(("case", "make", "words"), BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES])
def test_block_fields_are_checked(
    case: str, make: Callable[[], Any], words: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        make()
    refused(info.value, *words)


def _members(n: int) -> tuple[str, ...]:
    return tuple(str(Keypair().pubkey()) for _ in range(n))


IDENTITY = str(Pubkey.from_bytes(b"\x01" + bytes(31)))  # a point of order 1
M5 = _members(5)
POLICY_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("two members", {"members": M5[:2], "threshold": 2}, ("members", "at least 3")),
    ("duplicate", {"members": (*M5[:4], M5[0])}, ("duplicate members", M5[0])),
    ("not base58", {"members": ("0xabc", *M5[:4])}, ("member '0xabc'", "base58")),
    ("identity point", {"members": (IDENTITY, *M5[:4])}, (IDENTITY, "nobody")),
    ("threshold above", {"threshold": 6}, ("threshold 6", "above the member count")),
    ("below half", {"threshold": 2}, ("threshold 2 of 5", "below half")),
    ("timelock", {"timelock_seconds": 60}, ("timelock 60 s", "policy minimum")),
    ("emergency", {"emergency_threshold": 2}, ("emergency threshold 2", "set it to at least")),
]


@pytest.mark.parametrize(
    ("case", "overrides", "words"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES]
)
def test_multisig_policy_audit_names_the_field(
    case: str, overrides: dict[str, Any], words: tuple[str, ...]
) -> None:
    fields: dict[str, Any] = {
        "name": "ops",
        "members": M5,
        "threshold": 3,
        "timelock_seconds": 3600,
        "min_timelock_seconds": 600,
        **overrides,
    }
    with pytest.raises(RunbookError) as info:
        audit(Policy(**fields), "upgrade to v2")
    refused(info.value, *words, "fix the multisig policy block")


TEXT_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("empty", "", ("is empty", "say what changes")),
    ("blank", " \t ", ("is empty",)),
    ("bell", "upgrade\x07", ("printable ascii", "plain ascii")),
    ("newline", "line one\nline two", ("printable ascii",)),
    ("escape", "\x1b[31mred", ("printable ascii",)),
    ("non-ascii", "naïve upgrade", ("printable ascii",)),
    ("emoji", "ship it \U0001f680", ("printable ascii",)),
    ("too long", "x" * 1001, ("1001 characters", "1000 or fewer")),
]


@pytest.mark.parametrize(("case", "text", "words"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_descriptions_are_plain_ascii(case: str, text: str, words: tuple[str, ...]) -> None:
    with pytest.raises(InputError) as info:
        check_description(text, "description")
    refused(info.value, "description", *words)


# --- Sign-off form entries -------------------------------------------------------------

FORM_CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("decision", {"decision": "maybe"}, ("decision", "approve", "reject", "cancel")),
    ("comment control", {"comment": "ok\x00"}, ("comment", "pattern")),
    ("comment long", {"comment": "x" * 501}, ("comment", "at most 500")),
    ("no member", {"member": None}, ("member",)),
    ("no signature", {"signature": None}, ("signature",)),
]


@pytest.mark.parametrize(("case", "entry", "words"), FORM_CASES, ids=[c[0] for c in FORM_CASES])
def test_signoff_form_fields_are_checked(
    case: str, entry: dict[str, Any], words: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        SignOff(**{"member": str(Keypair().pubkey()), "signature": "1" * 64, **entry})
    refused(info.value, *words)


MEMBERS = [Keypair() for _ in range(5)]
FORM_POLICY = Policy(
    name="ops",
    members=tuple(str(m.pubkey()) for m in MEMBERS),
    threshold=3,
    timelock_seconds=0,
    min_timelock_seconds=0,
)
SUBJECT = approval.ApprovalSubject(
    governance=str(Keypair().pubkey()),
    proposal=1,
    program=str(Keypair().pubkey()),
    buffer=str(Keypair().pubkey()),
    sha256=SHA,
    cluster=str(Keypair().pubkey()),
)


def _sig(keypair: Keypair, action: str = "approve", subject: Any = SUBJECT) -> str:
    return str(approval.sign(keypair, subject.message(action)))


REVIEW_CASES: list[tuple[str, Callable[[], tuple[str, str, str]], tuple[str, ...]]] = [
    ("member empty", lambda: ("", _sig(MEMBERS[0]), "approve"), ("member pubkey", "base58")),
    ("member garbage", lambda: ("alice", _sig(MEMBERS[0]), "approve"), ("member pubkey",)),
    (
        "not a member",
        lambda: (str(Keypair().pubkey()), _sig(MEMBERS[0]), "approve"),
        ("not a member", "only its 5 members"),
    ),
    ("signature empty", lambda: (str(MEMBERS[0].pubkey()), "", "approve"), ("signature",)),
    (
        "signature hex",
        lambda: (str(MEMBERS[0].pubkey()), "ab" * 64, "approve"),
        ("signature", "runbooks sign"),
    ),
    (
        "signature of another member",
        lambda: (str(MEMBERS[0].pubkey()), _sig(MEMBERS[1]), "approve"),
        ("signature",),
    ),
    (
        "signature of another decision",
        lambda: (str(MEMBERS[0].pubkey()), _sig(MEMBERS[0], "reject"), "approve"),
        ("signature",),
    ),
]


@pytest.mark.parametrize(("case", "make", "words"), REVIEW_CASES, ids=[c[0] for c in REVIEW_CASES])
def test_signoff_entries_are_refused_by_review(
    case: str, make: Callable[[], tuple[str, str, str]], words: tuple[str, ...]
) -> None:
    member, signature, decision = make()
    verdict = signoff.review(SUBJECT, FORM_POLICY, member, signature, decision, ())  # type: ignore[arg-type]
    assert not verdict.accepted
    refused(Exception(verdict.reason), *words)


# --- Flow parameters and blocks: refused, nothing recorded, nothing sent ---------------


def _upgrade(n: dict[str, str], chain: DemoChain, **over: Any) -> Any:
    params: dict[str, Any] = {
        "program_id": str(chain.program_id),
        "buffer": n["buffer"],
        "description": "upgrade demo_vault to v2",
        "proposer": "alice",
        "cluster_block": n["cluster_block"],
        "policy_block": n["policy_block"],
        "authority_block": n["authority_block"],
        "fee_payer_block": n["fee_payer_block"],
    }
    if over.get("program_file") == V2_SO:  # the built v2, written by the fixture
        over = {**over, "program_file": n[V2_SO]}
    return upgrade_program(**{**params, **over})


def _rollback(n: dict[str, str], chain: DemoChain, **over: Any) -> Any:
    params: dict[str, Any] = {
        "program_id": str(chain.program_id),
        "reason": "v2 corrupts balances",
        "proposer": "alice",
        "cluster_block": n["cluster_block"],
        "policy_block": n["policy_block"],
        "authority_block": n["authority_block"],
        "fee_payer_block": n["fee_payer_block"],
    }
    return emergency_rollback(**{**params, **over})


def _rotation(n: dict[str, str], chain: DemoChain, **over: Any) -> Any:
    params: dict[str, Any] = {
        "program_id": str(chain.program_id),
        "reason": "the authority key is retired",
        "proposer": "alice",
        "new_authority": n["new_authority"],
        "new_authority_block": "bad-input-new-key",
        "cluster_block": n["cluster_block"],
        "policy_block": n["policy_block"],
        "authority_block": n["authority_block"],
        "fee_payer_block": n["fee_payer_block"],
        "programs_block": None,
    }
    return rotate_upgrade_authority(**{**params, **over})


def _kill(n: dict[str, str], chain: DemoChain, **over: Any) -> Any:
    params: dict[str, Any] = {
        "action": "engage",
        "program_id": str(chain.program_id),
        "reason": "draining the vault",
        "actor": "alice",
        "cluster_block": n["cluster_block"],
        "policy_block": n["policy_block"],
        "fee_payer_block": n["fee_payer_block"],
    }
    return kill_switch(**{**params, **over})


def _migrate(n: dict[str, str], chain: DemoChain, **over: Any) -> Any:
    params: dict[str, Any] = {
        "program_id": str(chain.program_id),
        "cluster_block": n["cluster_block"],
        "fee_payer_block": n["fee_payer_block"],
    }
    return migrate_accounts(**{**params, **over})


FLOWS = {
    "upgrade": _upgrade,
    "rollback": _rollback,
    "rotation": _rotation,
    "kill": _kill,
    "migrate": _migrate,
}
REPO = Path(__file__).resolve().parents[2]
MISSING = "bad-input-no-such-block"
V2_SO = "v2.so"  # stands for the path of the built v2 (``names``)
ZERO_HASH = "0" * 64
SQUADS_POLICY = "bad-input-squads-policy"
SQUADS_WORDS = ("backend squads", "names no multisig", "squads_multisig")
BROKEN_KEY = "bad-input-broken-key"

FLOW_CASES: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    # upgrade
    ("upgrade", "program id", {"program_id": "xyz"}, ("program id", "base58")),
    ("upgrade", "buffer", {"buffer": "0xabc"}, ("buffer", "solana address")),
    ("upgrade", "hash short", {"expected_sha256": "abc"}, ("expected_sha256", "64 hex")),
    ("upgrade", "hash not hex", {"expected_sha256": "zz" * 32}, ("expected_sha256", "sha256sum")),
    (
        "upgrade",
        "buffer and file",
        {"program_file": V2_SO, "expected_sha256": ZERO_HASH},
        ("buffer", "program_file", "not both"),
    ),
    ("upgrade", "neither buffer nor file", {"buffer": ""}, ("program_file", "not neither")),
    (
        "upgrade",
        "file missing",
        {"buffer": "", "program_file": "/nonexistent/vault.so", "expected_sha256": ZERO_HASH},
        ("program_file", "not a file"),
    ),
    (
        "upgrade",
        "file not an elf",
        {"buffer": "", "program_file": str(REPO / "README.md"), "expected_sha256": ZERO_HASH},
        ("program_file", "not an ELF"),
    ),
    (
        "upgrade",
        "file of another hash",
        {"buffer": "", "program_file": V2_SO, "expected_sha256": ZERO_HASH},
        ("program_file", "expected " + ZERO_HASH),
    ),
    (
        "upgrade",
        "file without hash",
        {"buffer": "", "program_file": V2_SO},
        ("program_file needs expected_sha256",),
    ),
    ("upgrade", "description empty", {"description": ""}, ("description is empty",)),
    ("upgrade", "description bell", {"description": "v2\x07"}, ("description", "plain ascii")),
    ("upgrade", "description utf8", {"description": "v2 für"}, ("description", "plain ascii")),
    ("upgrade", "description long", {"description": "x" * 2000}, ("description", "1000")),
    ("upgrade", "proposer empty", {"proposer": " "}, ("proposer is empty",)),
    ("upgrade", "fee payer missing", {"fee_payer_block": MISSING}, ("fee_payer_block", "create")),
    ("upgrade", "fee payer broken", {"fee_payer_block": BROKEN_KEY}, ("fee_payer_block", "64")),
    ("upgrade", "authority missing", {"authority_block": MISSING}, ("authority_block", MISSING)),
    ("upgrade", "slack missing", {"slack_block": MISSING}, ("slack_block", "Slack Channel")),
    ("upgrade", "policy missing", {"policy_block": MISSING}, ("Multisig Policy", MISSING)),
    ("upgrade", "cluster missing", {"cluster_block": MISSING}, ("Solana Cluster", MISSING)),
    ("upgrade", "cluster empty", {"cluster_block": ""}, ("block name is empty",)),
    (
        "upgrade",
        "squads backend, no multisig",
        {"policy_block": SQUADS_POLICY},
        SQUADS_WORDS,
    ),
    # rollback
    (
        "rollback",
        "squads backend",
        {"policy_block": SQUADS_POLICY},
        SQUADS_WORDS,
    ),
    ("rollback", "program id", {"program_id": "vault"}, ("program id", "base58")),
    ("rollback", "reason empty", {"reason": ""}, ("reason is empty",)),
    # NUL is not even storable by the Prefect API: \x01 reaches the flow.
    ("rollback", "reason control", {"reason": "a\x01b"}, ("reason", "plain ascii")),
    ("rollback", "force no reason", {"force": True}, ("force_reason", "why it is safe")),
    (
        "rollback",
        "force reason utf8",
        {"force": True, "force_reason": "geprüft"},
        ("force_reason", "plain ascii"),
    ),
    ("rollback", "to hash", {"to_sha256": "v1"}, ("to_sha256", "64 hex")),
    ("rollback", "proposer empty", {"proposer": ""}, ("proposer is empty",)),
    ("rollback", "fee payer missing", {"fee_payer_block": MISSING}, ("fee_payer_block",)),
    ("rollback", "slack missing", {"slack_block": MISSING}, ("slack_block",)),
    (
        "rollback",
        "pause of another program",
        {"program_pause_block": "bad-input-other-pause"},
        ("program_pause_block", "pauses"),
    ),
    # key rotation
    (
        "rotation",
        "squads backend",
        {"policy_block": SQUADS_POLICY},
        SQUADS_WORDS,
    ),
    ("rotation", "new authority", {"new_authority": "bob"}, ("new authority", "base58")),
    (
        "rotation",
        "two targets",
        {"make_immutable": True},
        ("give one of new_authority", "make_immutable"),
    ),
    ("rotation", "no target", {"new_authority": None}, ("new_authority",)),
    ("rotation", "reason empty", {"reason": ""}, ("reason is empty",)),
    ("rotation", "reason utf8", {"reason": "clé perdue"}, ("reason", "plain ascii")),
    ("rotation", "fee payer missing", {"fee_payer_block": MISSING}, ("fee_payer_block",)),
    ("rotation", "authority broken", {"authority_block": BROKEN_KEY}, ("authority_block",)),
    ("rotation", "slack missing", {"slack_block": MISSING}, ("slack_block",)),
    # kill switch
    ("kill", "program id", {"program_id": "all"}, ("program id", "base58")),
    ("kill", "reason empty", {"reason": ""}, ("reason is empty",)),
    ("kill", "reason escape", {"reason": "\x1b[2J"}, ("reason", "plain ascii")),
    ("kill", "actor empty", {"actor": ""}, ("actor is empty",)),
    ("kill", "slack missing", {"slack_block": MISSING}, ("slack_block",)),
    ("kill", "pause missing", {"program_pause_block": MISSING}, ("Program Pause", MISSING)),
    (
        "kill",
        "fee payer missing",
        {
            "program_pause_block": "bad-input-other-pause",
            "program_id": "*",
            "fee_payer_block": MISSING,
        },
        ("fee_payer_block",),
    ),
    (
        "kill",
        "release policy missing",
        {"action": "release", "policy_block": MISSING},
        ("policy_block", "Multisig Policy"),
    ),
    ("kill", "action", {"action": "pause"}, ("action", "engage", "release")),
    # migration
    ("migrate", "program id", {"program_id": "0x1"}, ("program id", "base58")),
    ("migrate", "hash", {"expected_program_sha256": "v2"}, ("expected_program_sha256", "64")),
    ("migrate", "concurrency zero", {"concurrency": 0}, ("concurrency", "greater than")),
    ("migrate", "concurrency huge", {"concurrency": 65}, ("concurrency", "less than")),
    ("migrate", "batch zero", {"batch_size": 0}, ("batch_size", "greater than")),
    ("migrate", "per tx zero", {"accounts_per_transaction": 0}, ("accounts_per_transaction",)),
    ("migrate", "migrator", {"migrator": "os:system"}, ("migrator", "RUNBOOKS_MIGRATOR_MODULES")),
    ("migrate", "migrator unknown", {"migrator": "vault2"}, ("migrator",)),
    ("migrate", "fee payer missing", {"fee_payer_block": MISSING}, ("Solana Keypair", MISSING)),
    ("migrate", "cluster missing", {"cluster_block": MISSING}, ("Solana Cluster", MISSING)),
    ("migrate", "shard form", {"shard": "1of4"}, ("shard", "i/N")),
    ("migrate", "shard index", {"shard": "4/4"}, ("shard", "i/N")),
    ("migrate", "shard zero", {"shard": "0/0"}, ("shard", "i/N")),
    ("migrate", "shard too many", {"shard": "0/257"}, ("shard", "256")),
    ("migrate", "shard negative", {"shard": "-1/4"}, ("shard", "i/N")),
]


@pytest.mark.parametrize(
    ("flow_name", "case", "over", "words"),
    FLOW_CASES,
    ids=[f"{c[0]}-{c[1]}" for c in FLOW_CASES],
)
async def test_flows_refuse_before_recording_or_sending(
    flow_name: str,
    case: str,
    over: dict[str, Any],
    words: tuple[str, ...],
    bad_chain: DemoChain,
    names: dict[str, str],
    records: Engine,
) -> None:
    rows = row_counts(records)
    sent = bad_chain.server.localnet.transaction_count
    with pytest.raises(Exception) as info:
        await FLOWS[flow_name](names, bad_chain, **over)
    text = re.sub(r"\s+", " ", str(info.value))
    assert "Traceback" not in text
    refused(Exception(text), *words)
    assert row_counts(records) == rows, "a refused run wrote a record"
    assert bad_chain.server.localnet.transaction_count == sent, "a refused run sent"


def test_the_sweep_has_at_least_80_cases() -> None:
    total = (
        len(SIGN_CASES)
        + 3  # keypair files
        + 5  # usage errors
        + 5  # metrics
        + 7  # localnet
        + 3  # environment
        + 4  # database URLs
        + len(BLOCK_CASES)
        + len(POLICY_CASES)
        + len(TEXT_CASES)
        + len(FORM_CASES)
        + len(REVIEW_CASES)
        + len(FLOW_CASES)
    )
    assert total >= 80, total
    assert json.dumps(total)

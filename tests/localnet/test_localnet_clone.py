"""Cloning from a cluster (``Localnet.clone_from``, ``python -m localnet --url ... --clone
... --clone-upgradeable-program ...``), proven by cloning from a second localnet: the
cloned program executes at its real id, cloned accounts are byte for byte the source's,
and a refused clone writes nothing and serves nothing. Also ``RUNBOOKS_SQUADS_SO``."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from solders.account import Account
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction import Transaction

from core.errors import InputError
from core.http_server import free_port
from localnet import Localnet, LocalnetServer
from localnet.cli import main
from programs import loader
from programs.demo_vault import client as vault
from programs.squads.client import PROGRAM_ID as SQUADS_ID
from tests.localnet.test_localnet_cli import wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    url: str
    net: Localnet
    program_id: Pubkey
    authority: Pubkey
    account: Pubkey


@pytest.fixture(scope="module")
def source(demo_binaries: dict[str, bytes]) -> Iterator[Source]:
    """A second localnet to clone from: demo_vault v1 deployed, and one plain account."""
    with LocalnetServer(port=0) as server:
        net = server.localnet
        authority = Keypair()
        program_id = net.deploy_upgradeable(Keypair(), demo_binaries["v1"], authority)
        account = Pubkey.new_unique()
        owner = Pubkey.new_unique()
        net.svm.set_account(account, Account(1_234_567, b"\x07cloned\x00data", owner, False, 0))
        yield Source(server.url, net, program_id, authority.pubkey(), account)


def run_demo_vault(net: Localnet, program_id: Pubkey) -> list[str]:
    """Create and initialise a demo_vault config account; the program's logs."""
    payer, config = Keypair(), Keypair()
    net.airdrop(payer.pubkey(), 10**10)
    rent = net.minimum_balance_for_rent_exemption(vault.Config.SIZE)
    ixs = vault.create_config_instructions(
        payer.pubkey(), config.pubkey(), payer.pubkey(), program_id, rent
    )
    blockhash, _ = net.latest_blockhash()
    outcome = net.send_transaction(
        Transaction([payer, config], Message(ixs, payer.pubkey()), blockhash)
    )
    assert outcome.ok, outcome.logs
    stored = net.get_account(config.pubkey())
    assert stored is not None and stored.owner == program_id
    return outcome.logs


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_a_cloned_program_executes_and_accounts_are_equal(source: Source) -> None:
    net = Localnet()
    programdata = loader.programdata_address(source.program_id)
    written = net.clone_from(
        source.url, accounts=[source.account], programs=[str(source.program_id)]
    )
    assert set(written) == {source.account, source.program_id, programdata}
    for key in written:
        assert net.get_account(key) == source.net.get_account(key)
    pd = net.get_account(programdata)
    assert pd is not None
    state = loader.decode_state(bytes(pd.data))
    assert isinstance(state, loader.ProgramData) and state.authority == source.authority
    logs = run_demo_vault(net, source.program_id)
    assert f"Program {source.program_id} success" in logs


@pytest.mark.parametrize(
    ("accounts", "programs", "says"),
    [
        (["missing"], [], r"--clone {missing}: no account at that address"),
        ([], ["missing"], r"--clone-upgradeable-program {missing}: no account"),
        ([], ["account"], r"--clone-upgradeable-program {account}: not an upgradeable program"),
        ([], ["system"], r"--clone-upgradeable-program {system}: not an upgradeable program"),
        (["junk"], [], r"--clone 'not-a-key' is not a base58 address"),
    ],
)
def test_a_refused_clone_names_the_address_and_writes_nothing(
    source: Source, accounts: list[str], programs: list[str], says: str
) -> None:
    names = {
        "missing": str(Pubkey.new_unique()),
        "account": str(source.account),
        "system": str(SYSTEM_PROGRAM_ID),
        "junk": "not-a-key",
    }
    net = Localnet()
    # A good account listed alongside: it must not be written either.
    with pytest.raises(InputError, match=says.format(**names)):
        net.clone_from(
            source.url,
            accounts=[str(source.account), *(names[a] for a in accounts)],
            programs=[names[p] for p in programs],
        )
    assert net.get_account(source.account) is None


def test_an_unreachable_url_is_refused_without_its_secret_parts() -> None:
    url = closed_port_url()
    net = Localnet()
    account = Pubkey.new_unique()
    with pytest.raises(InputError, match=f"cannot clone from {url}: getMultipleAccounts got no"):
        net.clone_from(url, accounts=[account])
    # Provider URLs carry API keys in their path or query: never in a message.
    with pytest.raises(InputError) as refused:
        net.clone_from(f"{url}/v2/s3cr3t?api-key=hunter2", accounts=[account])
    assert "s3cr3t" not in str(refused.value) and "hunter2" not in str(refused.value)
    for bad in ("not a url", "ftp://example.com", "http://"):
        with pytest.raises(InputError, match=r"--url is not an http\(s\) RPC URL"):
            net.clone_from(bad, accounts=[account])
    assert net.get_account(account) is None


def test_the_cli_clones_before_serving(source: Source, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localnet",
            "--port",
            "0",
            "--url",
            source.url,
            "--clone",
            str(source.account),
            "--clone-upgradeable-program",
            str(source.program_id),
            "--ready-file",
            str(ready),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = wait_for(ready, proc)
        cloned = Localnet()
        # Cloning back out of the CLI's localnet reads what it serves.
        cloned.clone_from(url, accounts=[source.account], programs=[source.program_id])
        assert cloned.get_account(source.account) == source.net.get_account(source.account)
        assert f"Program {source.program_id} success" in run_demo_vault(cloned, source.program_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("bad", ["missing", "not-program", "unreachable", "no-url"])
def test_the_cli_refuses_a_bad_clone_and_serves_nothing(
    source: Source, bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "ready"
    missing = Pubkey.new_unique()
    argv, says = {
        "missing": (["--url", source.url, "--clone", str(missing)], f"--clone {missing}: no"),
        "not-program": (
            ["--url", source.url, "--clone-upgradeable-program", str(source.account)],
            f"{source.account}: not an upgradeable program",
        ),
        "unreachable": (
            ["--url", closed_port_url(), "--clone", str(source.account)],
            "cannot clone from http://127.0.0.1:",
        ),
        "no-url": (["--clone", str(source.account)], "add --url"),
    }[bad]
    full = ["--port", "0", "--ready-file", str(ready), *argv]
    if bad == "no-url":
        with pytest.raises(SystemExit) as exited:
            main(full)
        assert exited.value.code == 2
    else:
        assert main(full) == 2
    assert says in capsys.readouterr().err
    assert not ready.exists()


def test_runbooks_squads_so_loads_the_binary_at_the_squads_id(
    demo_binaries: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any sBPF program stands in for the Squads binary: what is proven is that the
    # localnet runs the file's code at the Squads id.
    so = tmp_path / "squads.so"
    so.write_bytes(demo_binaries["v1"])
    monkeypatch.setenv("RUNBOOKS_SQUADS_SO", str(so))
    net = Localnet()
    program = net.get_account(SQUADS_ID)
    assert program is not None and program.executable and program.owner == loader.LOADER_ID
    pd = net.get_account(loader.programdata_address(SQUADS_ID))
    assert pd is not None and loader.program_bytes(bytes(pd.data)) == demo_binaries["v1"]
    assert f"Program {SQUADS_ID} success" in run_demo_vault(net, SQUADS_ID)


def test_runbooks_squads_so_naming_no_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.so"
    monkeypatch.setenv("RUNBOOKS_SQUADS_SO", str(missing))
    with pytest.raises(InputError, match=rf"RUNBOOKS_SQUADS_SO={missing}: no such file"):
        Localnet()
    ready = tmp_path / "ready"
    assert main(["--port", "0", "--ready-file", str(ready)]) == 2
    assert not ready.exists()


def test_without_runbooks_squads_so_there_is_no_squads_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNBOOKS_SQUADS_SO", raising=False)
    assert Localnet().get_account(SQUADS_ID) is None

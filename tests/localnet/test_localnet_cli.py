"""``python -m localnet``: preloaded programs, ready file, URL on stdout, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.errors import InputError
from localnet.cli import main, parse_program
from programs import loader

REPO = Path(__file__).resolve().parents[2]


def write_keypair(path: Path, kp: Keypair) -> Path:
    path.write_text(json.dumps(list(bytes(kp))))
    return path


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise AssertionError(
                f"localnet exited early: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.02)
    raise AssertionError("localnet did not become ready")


async def test_cli_serves_preloaded_programs(tmp_path: Path, memo_elf: bytes) -> None:
    so = tmp_path / "memo.so"
    so.write_bytes(memo_elf)
    authority = Keypair()
    program_kp = Keypair()
    bare_id = Pubkey.new_unique()
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localnet",
            "--port",
            "0",
            "--program",
            f"{bare_id}={so}",
            "--program",
            f"{write_keypair(tmp_path / 'program.json', program_kp)}={so}",
            "--authority",
            str(write_keypair(tmp_path / "authority.json", authority)),
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
        assert url.startswith("http://127.0.0.1:")
        assert proc.stdout is not None and proc.stdout.readline().strip() == url
        async with AsyncClient(url) as client:
            for program_id in (bare_id, program_kp.pubkey()):
                account = (await client.get_account_info(program_id)).value
                assert account is not None and account.executable
                pd = (await client.get_account_info(loader.programdata_address(program_id))).value
                assert pd is not None
                state = loader.decode_state(bytes(pd.data))
                assert isinstance(state, loader.ProgramData)
                assert state.authority == authority.pubkey()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_parse_program(tmp_path: Path) -> None:
    key = Pubkey.new_unique()
    assert parse_program(f"{key}=a/b.so") == (key, Path("a/b.so"))
    kp = Keypair()
    program, _ = parse_program(f"{write_keypair(tmp_path / 'k.json', kp)}=p.so")
    assert isinstance(program, Keypair) and program.pubkey() == kp.pubkey()
    for bad in ("no-equals", "=p.so", f"{key}=", "not-a-key=p.so"):
        with pytest.raises(InputError):
            parse_program(bad)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(InputError, match=r"keypair file .*junk\.json: not a Solana keypair"):
        parse_program(f"{tmp_path / 'junk.json'}=p.so")


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.so"
    assert main(["--port", "0", "--program", f"{Pubkey.new_unique()}={missing}"]) == 2
    assert "cannot read program" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "99999"], "99999 is not a TCP port: use 0..65535"),
        (["--port", "-1"], "-1 is not a TCP port"),
        (["--port", "http"], "'http' is not a number"),
    ],
)
def test_a_bad_port_is_refused_by_name(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"argument --port: {says}" in capsys.readouterr().err


def test_a_ready_file_in_a_missing_folder_is_refused_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "missing" / "localnet.url"
    assert main(["--port", "0", "--ready-file", str(ready)]) == 2
    err = capsys.readouterr().err
    assert f"the folder {ready.parent} does not exist" in err
    assert "Traceback" not in err
    assert not ready.parent.exists()


def test_a_ready_file_that_is_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", "--ready-file", str(tmp_path)]) == 2
    assert "is a folder; name a file in it instead" in capsys.readouterr().err

"""The buffer write killed part-way (SIGKILL, no cleanup) and run again: the rerun finds
its buffer through the write-ahead journal, reads it back and sends only the chunks that
are missing; the buffer ends with the file's hash and the governance's authority.

The first run is a subprocess against this process's localnet, Prefect API and records.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import get_current_settings
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine

from blocks import SolanaCluster
from programs import loader
from runbooks.demo import DemoChain, save_blocks, start_demo_chain
from store.records import transactions
from tasks.buffer import buffer_purpose, journaled_buffer, write_program_buffer
from tasks.records import records_engine

REPO = Path(__file__).resolve().parents[2]
WAVE = 16
WAVES_BEFORE_KILL = 2

# Writes in waves of WAVE and kills itself (SIGKILL) once WAVES_BEFORE_KILL waves landed.
SCRIPT = f"""
import asyncio, os, signal, sys
from programs import send
from blocks import SolanaCluster
from tasks.buffer import write_program_buffer

send.WRITES_PER_BLOCKHASH = {WAVE}
original = send.send_batch
waves = 0

async def counting(*args, **kwargs):
    global waves
    outcomes = await original(*args, **kwargs)
    if kwargs.get("preflight") is False:  # a wave of Writes
        waves += 1
        if waves == {WAVES_BEFORE_KILL}:
            os.kill(os.getpid(), signal.SIGKILL)
    return outcomes

send.send_batch = counting
{{hook}}
cluster_block, path, sha, purpose, payer_block, pda = sys.argv[1:]

async def main():
    cluster = await SolanaCluster.aload(cluster_block)
    await write_program_buffer(
        cluster, "unused", path, sha, purpose, payer_block, governance_authority=pda
    )

asyncio.run(main())
"""
# The kill above comes after a wave settled. This one comes once a wave's Writes were sent,
# before their confirmation: they stay unsettled in the journal for the rerun to settle.
BEFORE_SETTLE = f"""
send.send_batch = original
sent = 0
unchecked = send._send_unchecked

async def sending(*args, **kwargs):
    global sent
    await unchecked(*args, **kwargs)
    sent += 1
    if sent == {WAVES_BEFORE_KILL}:
        os.kill(os.getpid(), signal.SIGKILL)

send._send_unchecked = sending
"""


@pytest.fixture
def chain(demo_binaries: dict[str, bytes]) -> Iterator[DemoChain]:
    chain = start_demo_chain(members=3, binaries=demo_binaries)
    yield chain
    chain.server.stop()


@pytest.fixture
def records_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


def count_writes(chain: DemoChain) -> list[int]:
    """The offsets of the Write instructions that land from now on."""
    net = chain.server.localnet
    offsets: list[int] = []
    send = net.send_transaction

    def counting(tx: Any, **kwargs: Any) -> Any:
        outcome = send(tx, **kwargs)
        if outcome.landed and outcome.ok:
            keys = tx.message.account_keys
            for ix in tx.message.instructions:
                data = bytes(ix.data)
                if keys[ix.program_id_index] == loader.LOADER_ID and data[:4] == b"\x01\0\0\0":
                    offsets.append(int.from_bytes(data[4:8], "little"))
        return outcome

    net.send_transaction = counting  # type: ignore[method-assign]
    return offsets


def program_bytes(chain: DemoChain, address: str) -> bytes:
    account = chain.server.localnet.get_account(Pubkey.from_string(address))
    assert account is not None
    return loader.program_bytes(bytes(account.data))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_killed_buffer_write_resumes_with_only_the_missing_chunks(
    prefect_api: None, chain: DemoChain, records_db: Engine, db_url: str, tmp_path: Path
) -> None:
    script = SCRIPT.replace("{hook}", "")
    await killed_and_resumed(script, 0, chain, records_db, db_url, tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_writes_killed_before_they_settled_are_settled_and_not_sent_again(
    prefect_api: None, chain: DemoChain, records_db: Engine, db_url: str, tmp_path: Path
) -> None:
    script = SCRIPT.replace("{hook}", BEFORE_SETTLE)
    await killed_and_resumed(script, WAVE, chain, records_db, db_url, tmp_path)


async def killed_and_resumed(
    script: str,
    unsettled: int,
    chain: DemoChain,
    records_db: Engine,
    db_url: str,
    tmp_path: Path,
) -> None:
    """Run ``script`` until it kills itself, leaving ``unsettled`` Writes in the journal;
    a rerun sends only the missing chunks and settles everything."""
    # v2 with 64 KiB of non-zero tail: enough chunks for several waves.
    elf = chain.binaries["v2"] + bytes((i % 251) + 1 for i in range(64 * 1024))
    sha = loader.verifiable_hash(elf)
    path = tmp_path / "vault.so"
    path.write_bytes(elf)
    names = await save_blocks(chain, prefix=f"t-{uuid.uuid4().hex[:10]}")
    purpose = buffer_purpose("localnet", str(chain.program_id), sha, f"test-{uuid.uuid4()}")
    pda = str(Keypair().pubkey())  # stands in for a governance's authority PDA
    chunks = list(loader.write_chunks(elf))
    written_first = count_writes(chain)

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            *(names["cluster_block"], str(path), sha, purpose),
            *(names["fee_payer_block"], pda),
        ],
        cwd=REPO,
        env={
            **os.environ,
            "DATABASE_URL": db_url,
            "PREFECT_API_URL": get_current_settings().api.url or "",
            "PYTHONPATH": str(REPO),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        },
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    address = journaled_buffer(purpose)
    assert address is not None
    assert len(written_first) == WAVE * WAVES_BEFORE_KILL
    half = program_bytes(chain, address)
    missing = [o for o, c in chunks if half[o : o + len(c)] != c]
    assert 0 < len(missing) == len(chunks) - len(written_first)
    left = [r for r in transactions.transactions_like(records_db, purpose) if r.status == "sent"]
    assert len(left) == unsettled

    written_again = count_writes(chain)
    cluster = await SolanaCluster.aload(names["cluster_block"])
    again = await write_program_buffer(
        cluster,
        str(chain.program_id),
        str(path),
        sha,
        purpose,
        names["fee_payer_block"],
        governance_authority=pda,
    )
    assert again == address  # the same buffer, resumed
    assert sorted(written_again) == sorted(missing)  # only what was missing was sent
    assert loader.verifiable_hash(program_bytes(chain, address)) == sha
    account = chain.server.localnet.get_account(Pubkey.from_string(address))
    assert account is not None
    state = loader.decode_state(bytes(account.data))
    assert state == loader.Buffer(authority=Pubkey.from_string(pda))  # handed over

    # One create for the run; the killed run's Writes and the rerun's all settled.
    rows = transactions.transactions_like(records_db, purpose)
    assert [r.status for r in rows if r.purpose.endswith(":create")] == ["landed"]
    assert all(r.status == "landed" for r in rows)
    # A third run finds everything done: nothing sent.
    written_third = count_writes(chain)
    assert (
        await write_program_buffer(
            cluster,
            str(chain.program_id),
            str(path),
            sha,
            purpose,
            names["fee_payer_block"],
            governance_authority=pda,
        )
        == address
    )
    assert written_third == []

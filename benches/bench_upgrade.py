"""Upgrade runbook benchmarks.

1. Writing a 512 KiB buffer through the localnet's JSON-RPC (what `solana program
   write-buffer` does), against the same Write transactions straight into LiteSVM.
2. The upgrade flow's wall time with the waits (sign-off pauses, timelock) taken out,
   against the same chain work done directly (read program and buffer, send the
   Upgrade, read back) without Prefect or records.
"""

from __future__ import annotations

import asyncio
import os

from solana.rpc.async_api import AsyncClient
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.transaction import Transaction

from benches._report import figure, heading, ratio, stopwatch
from programs import loader, rpc, send
from runbooks.demo import run_upgrade, save_blocks, start_demo_chain, write_buffer

BUFFER_BYTES = 512 * 1024
SOL = 1_000_000_000


def write_straight_into_litesvm(data: bytes) -> float:
    """Seconds to create a buffer and Write ``data`` with direct LiteSVM calls."""
    svm = LiteSVM()
    payer, buffer = Keypair(), Keypair()
    svm.airdrop(payer.pubkey(), 100 * SOL)
    rent = svm.minimum_balance_for_rent_exemption(loader.BUFFER_METADATA_SIZE + len(data))
    with stopwatch() as elapsed:
        create = loader.create_buffer(
            payer.pubkey(), buffer.pubkey(), payer.pubkey(), rent, len(data)
        )
        tx = Transaction.new_signed_with_payer(
            create, payer.pubkey(), [payer, buffer], svm.latest_blockhash()
        )
        assert not hasattr(svm.send_transaction(tx), "err")
        for offset, chunk in loader.write_chunks(data):
            ix = loader.write(buffer.pubkey(), payer.pubkey(), offset, chunk)
            tx = Transaction.new_signed_with_payer(
                [ix], payer.pubkey(), [payer], svm.latest_blockhash()
            )
            result = svm.send_transaction(tx)
            assert not hasattr(result, "err"), result
        seconds = elapsed()
    account = svm.get_account(buffer.pubkey())
    assert account is not None and bytes(account.data)[loader.BUFFER_METADATA_SIZE :] == data
    return seconds


async def write_through_rpc(data: bytes) -> float:
    chain = start_demo_chain(members=3)
    try:
        with stopwatch() as elapsed:
            buffer = await write_buffer(chain, data)
            seconds = elapsed()
        account = chain.server.localnet.get_account(buffer)
        assert account is not None and bytes(account.data)[loader.BUFFER_METADATA_SIZE :] == data
        return seconds
    finally:
        chain.server.stop()


async def upgrade_direct() -> float:
    """The chain work of an upgrade, without Prefect or records."""
    chain = start_demo_chain()
    try:
        buffer = await write_buffer(chain, chain.binaries["v2"])
        async with AsyncClient(chain.url) as client:
            with stopwatch() as elapsed:
                program = await rpc.read_program(client, chain.program_id)
                buf = await rpc.read_buffer(client, buffer)
                rpc.check_upgrade_ready(program, buf, chain.authority.pubkey(), buf.sha256)
                ix = loader.upgrade(
                    chain.program_id, buffer, chain.authority.pubkey(), chain.authority.pubkey()
                )
                await send.send_and_confirm(client, [ix], chain.authority)
                after = await rpc.read_program(client, chain.program_id)
                seconds = elapsed()
        assert after.sha256 == buf.sha256
        return seconds
    finally:
        chain.server.stop()


async def upgrade_flow() -> tuple[float, float]:
    """(wall seconds, seconds paused for sign-offs or in the timelock) of one flow run."""
    chain = start_demo_chain()
    try:
        buffer = await write_buffer(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix="bench", timelock_seconds=0)
        with stopwatch() as elapsed:
            result = await run_upgrade(chain, buffer, chain.members[:3], names)
            wall = elapsed()
        return wall, result["seconds_waiting"]
    finally:
        chain.server.stop()


def main() -> None:
    os.environ.setdefault("RUNBOOKS_PAUSE_POLL_SECONDS", "1")
    heading("upgrade: buffer write (512 KiB)")
    data = os.urandom(BUFFER_BYTES)
    raw = write_straight_into_litesvm(data)
    rpc = asyncio.run(write_through_rpc(data))
    writes = len(list(loader.write_chunks(data)))
    figure(f"straight into LiteSVM ({writes} Write transactions)", raw, "s")
    figure("through the localnet JSON-RPC (solana-py, 16 in flight)", rpc, "s")
    figure("through the localnet JSON-RPC", BUFFER_BYTES / 1024 / rpc, "KiB/s")
    ratio("RPC / straight", rpc, raw)

    heading("upgrade: flow wall time, waits excluded")
    direct = asyncio.run(upgrade_direct())
    wall, waiting = asyncio.run(upgrade_flow())
    figure("chain work alone (read, check, Upgrade, read back)", direct, "s")
    figure("flow wall time", wall, "s")
    figure("  of which paused for sign-offs or in the timelock", waiting, "s")
    figure("flow wall time, waits excluded", wall - waiting, "s")
    ratio("flow (waits excluded) / chain work alone", wall - waiting, direct)

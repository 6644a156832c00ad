"""Account migration benchmarks, on one localnet with demo_vault v2 deployed.

1. Raw: 10,000 v1 vaults migrated by sending packed migrate transactions as the flow
   packs them (21 per transaction, with the rent top-up; no compute-budget instructions)
   straight to the localnet's JSON-RPC, as many in flight as the flow has, and confirming
   them with the send path's confirmation loop. No simulation, no fee read, no journal,
   no discovery, no snapshots, no records, no verification: the floor.
2. The migration flow on 10,000 other v1 vaults: discover, snapshot into the records,
   send, confirm, read back and verify, record each account, progress artifact.
3. The naive shape, one Prefect task and one transaction per account (on 500 vaults).

The vaults are written straight into the SVM: setting the state up is not measured.
The records go to a scratch SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from benches._report import figure, heading, ratio, stopwatch
from programs import rpc
from programs.demo_vault import client as vault
from programs.demo_vault.plugins import DemoVaultMigrator
from programs.send import SendOptions, Signed, confirm
from runbooks.demo import DemoChain, save_blocks, start_demo_chain
from runbooks.demo_migration import seed_vaults, upgrade_directly

ACCOUNTS = 10_000
NAIVE_ACCOUNTS = 500
# The flow's default: 8 batches of 100 accounts, each sending its 5 transactions at once.
IN_FLIGHT = 8 * 5
# A blockhash is good for 150 blocks, and every transaction is a block on the localnet.
TRANSACTIONS_PER_BLOCKHASH = 100


async def raw_sends(chain: DemoChain, vaults: list[Pubkey]) -> tuple[float, int]:
    """(seconds, transactions) to migrate ``vaults`` with packed transactions over RPC."""
    migrator = DemoVaultMigrator()
    payer = chain.authority
    per_tx = migrator.accounts_per_transaction(chain.program_id, payer.pubkey())
    chunks = [vaults[i : i + per_tx] for i in range(0, len(vaults), per_tx)]
    limit = asyncio.Semaphore(IN_FLIGHT)
    async with AsyncClient(chain.url) as client:
        with stopwatch() as elapsed:
            signatures: list[Signed] = []
            for start in range(0, len(chunks), TRANSACTIONS_PER_BLOCKHASH):
                latest = (await client.get_latest_blockhash(commitment=Confirmed)).value

                async def send(chunk: list[Pubkey], latest=latest) -> Signed:
                    ixs = migrator.migrate_instructions(chain.program_id, chunk, payer.pubkey())
                    tx = Transaction.new_signed_with_payer(
                        ixs, payer.pubkey(), [payer], latest.blockhash
                    )
                    async with limit:
                        await client.send_transaction(tx, opts=rpc.SEND_OPTS)
                    return Signed.of(tx, latest.last_valid_block_height)

                wave = chunks[start : start + TRANSACTIONS_PER_BLOCKHASH]
                signatures += await asyncio.gather(*(send(c) for c in wave))
            outcomes = await confirm(client, signatures, SendOptions(max_priority_fee=0))
            seconds = elapsed()
    assert all(o.landed for o in outcomes.values()), "a raw migrate failed"
    _check_migrated(chain, vaults)
    return seconds, len(chunks)


async def flow_run(chain: DemoChain, names: dict[str, str], **params: object) -> dict:
    from flows.migration import migrate_accounts

    return await migrate_accounts(
        program_id=str(chain.program_id),
        cluster_block=names["cluster_block"],
        fee_payer_block=names["fee_payer_block"],
        **params,
    )


def _check_migrated(chain: DemoChain, vaults: list[Pubkey]) -> None:
    accounts = chain.server.localnet.get_accounts(vaults)
    assert all(
        a is not None and vault.layout_version(bytes(a.data)) == vault.VaultV2.VERSION
        for a in accounts
    ), "not every vault was migrated"


async def run() -> None:
    chain = start_demo_chain()
    try:
        await upgrade_directly(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix="bench-migration")
        config = Pubkey.new_unique()

        raw_vaults = seed_vaults(chain, config, ACCOUNTS)
        raw, transactions = await raw_sends(chain, raw_vaults)

        flow_vaults = seed_vaults(chain, config, ACCOUNTS)
        with stopwatch() as elapsed:
            result = await flow_run(chain, names)
            wall = elapsed()
        assert result["migrated_now"] == ACCOUNTS, result
        _check_migrated(chain, flow_vaults)

        naive_vaults = seed_vaults(chain, config, NAIVE_ACCOUNTS)
        with stopwatch() as elapsed:
            naive_result = await flow_run(chain, names, batch_size=1, accounts_per_transaction=1)
            naive = elapsed()
        assert naive_result["migrated_now"] == NAIVE_ACCOUNTS, naive_result
        _check_migrated(chain, naive_vaults)
    finally:
        chain.server.stop()

    heading(f"migration: {ACCOUNTS:,} accounts, demo_vault v1 -> v2")
    figure(f"raw: {transactions} packed migrate transactions over RPC", raw, "s")
    figure("raw rate", ACCOUNTS / raw, "accounts/s")
    figure("flow: discover, snapshot, migrate, verify, record", wall, "s")
    figure("flow rate", ACCOUNTS / wall, "accounts/s")
    figure("  migrate transactions the flow sent", result["transactions"], "")
    ratio("flow / raw (time)", wall, raw)
    heading(f"migration: naive, one task and one transaction per account ({NAIVE_ACCOUNTS:,})")
    figure("naive flow", naive, "s")
    figure("naive rate", NAIVE_ACCOUNTS / naive, "accounts/s")
    ratio("flow rate / naive rate", ACCOUNTS / wall, NAIVE_ACCOUNTS / naive)


def main() -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench-records.db'}"
    # A scratch database this bench creates (an explicit DATABASE_URL is otherwise refused
    # unless it names an existing records database).
    os.environ["RUNBOOKS_CREATE_DATABASE"] = "1"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    asyncio.run(run())


if __name__ == "__main__":
    main()

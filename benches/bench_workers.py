"""The account migration fanned out across process workers, on one Prefect server.

One `prefect server start` on a scratch PostgreSQL database, the ``runbooks`` pool,
prefect.yaml deployed with `prefect deploy --all`; records on a scratch PostgreSQL
database. The same migration (``ACCOUNTS`` v1 vaults written straight into LiteSVM,
demo_vault v2 deployed, ``SHARDS`` shards) twice, each on its own localnet program:

1. one worker (it runs the shards one after another);
2. two workers (one shard each at a time).

Wall time is the sharded parent run's, from its start to its report (the shards' flow
runs start in the workers' processes inside it). After each, every vault's migrate is
counted from the localnet's history: exactly one each.

Size: ``BENCH_WORKERS_ACCOUNTS`` (default 100,000), or
``python -m benches.bench_workers ACCOUNTS``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from benches._report import figure, heading, ratio, stopwatch
from flows.migration_fanout import migrate_accounts_sharded
from programs.anchor import instruction_discriminator
from runbooks.demo import DemoChain, demo_binaries, save_blocks, start_demo_chain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from runbooks.worker_stack import WorkerStack, worker_stack

ACCOUNTS = 100_000
SHARDS = 2
MIGRATE = instruction_discriminator("migrate")


def migrated_once(chain: DemoChain, vaults: int) -> tuple[int, int]:
    """(vaults with exactly one landed migrate, vaults with more than one)."""
    per_vault: dict[str, int] = {}
    for landed in chain.server.localnet.history():
        tx = landed.transaction
        if landed.err is not None or tx is None:
            continue
        keys = tx.message.account_keys
        for ix in tx.message.instructions:
            if keys[ix.program_id_index] == chain.program_id and bytes(ix.data) == MIGRATE:
                address = str(keys[ix.accounts[0]])
                per_vault[address] = per_vault.get(address, 0) + 1
    once = sum(1 for n in per_vault.values() if n == 1)
    return once, len(per_vault) - once


async def one_run(stack: WorkerStack, workers: int, accounts: int, binaries: dict) -> float:
    chain = start_demo_chain(binaries=binaries)
    try:
        seed_vaults(chain, chain.authority.pubkey(), accounts, spread=True)
        await upgrade_directly(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix=f"bench-workers-{workers}")
        stack.start_workers(workers)
        await stack.online()
        with stopwatch() as elapsed:
            result = await migrate_accounts_sharded(
                program_id=str(chain.program_id),
                shards=SHARDS,
                cluster_block=names["cluster_block"],
                fee_payer_block=names["fee_payer_block"],
                poll_seconds=0.5,
            )
        seconds = elapsed()
        once, more = migrated_once(chain, accounts)
        verified = result["accounts"]["verified"]
        figure(f"{workers} worker(s): wall time", seconds, "s")
        figure(f"{workers} worker(s): accounts/s", accounts / seconds, "acc/s")
        figure(f"{workers} worker(s): vaults migrated exactly once", once, f"of {accounts:,}")
        figure(f"{workers} worker(s): vaults migrated more than once", more, "")
        figure(f"{workers} worker(s): verified in the records", verified, f"of {accounts:,}")
        if once != accounts or more or verified != accounts:
            raise AssertionError(f"{workers} worker(s): exactly-once broken: {once}, {more}")
        return seconds
    finally:
        chain.server.stop()


async def run(accounts: int) -> None:
    from store.db import create_engine, migrate
    from store.testing import create_scratch_database, drop_database

    binaries = demo_binaries()
    records = create_scratch_database()
    engine = create_engine(records)
    migrate(engine)  # the workers' processes find a records database
    engine.dispose()
    os.environ["DATABASE_URL"] = records
    try:
        work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        async with worker_stack(work, records_url=records, workers_count=0) as stack:
            heading(
                f"Sharded migration of {accounts:,} accounts ({SHARDS} shards), PostgreSQL-"
                "backed Prefect server, process workers (one flow run at a time each)"
            )
            one = await one_run(stack, 1, accounts, binaries)
            two = await one_run(stack, 2, accounts, binaries)
            ratio("speed-up of 2 workers over 1 (same machine, same localnet)", one, two)
    finally:
        drop_database(records)


def main() -> None:
    accounts = int(
        sys.argv[1]
        if __name__ == "__main__" and len(sys.argv) > 1
        else os.environ.get("BENCH_WORKERS_ACCOUNTS", ACCOUNTS)
    )
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    asyncio.run(run(accounts))


if __name__ == "__main__":
    main()

"""Account migration benchmarks, on one localnet with demo_vault v2 deployed, at 10,000
and at 100,000 accounts:

1. Raw: N v1 vaults migrated by sending packed migrate transactions as the flow
   packs them (21 per transaction, with the rent top-up; no compute-budget instructions)
   straight to the localnet's JSON-RPC, as many in flight as the flow has, and confirming
   them with the send path's confirmation loop. No simulation, no fee read, no journal,
   no discovery, no snapshots, no records, no verification: the floor.
2. The migration flow on N other v1 vaults, in a process of its own (its peak RSS is the
   flow's alone; the localnet stays in this one): discover, snapshot into the records,
   send, confirm, read back and verify, record each account, progress artifact. Each
   size gets a scratch records database of its own.
3. The naive shape, one Prefect task and one transaction per account (on 500 vaults).

The vaults are written straight into the SVM: setting the state up is not measured.
The records go to scratch SQLite files. ``BENCH_MIGRATION_PROFILE=DIR`` writes a
cProfile of each flow process to DIR.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
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

# ``BENCH_MIGRATION_SIZES=2000,20000`` for a quick look; the figures are at the default.
SIZES = tuple(int(n) for n in os.environ.get("BENCH_MIGRATION_SIZES", "10000,100000").split(","))
NAIVE_ACCOUNTS = 500
REPO = Path(__file__).resolve().parents[1]
# The flow process: runs the flow, then prints its summary and peak RSS as one JSON line.
FLOW_PROCESS = """
import asyncio, cProfile, json, os, resource, sys
from flows.migration import migrate_accounts
run = lambda: asyncio.run(migrate_accounts(
    program_id=sys.argv[1], cluster_block=sys.argv[2], fee_payer_block=sys.argv[3]))
profile = os.environ.get("BENCH_MIGRATION_PROFILE")
if profile:
    profiler = cProfile.Profile()
    summary = profiler.runcall(run)
    profiler.dump_stats(os.path.join(profile, f"flow-{sys.argv[4]}.prof"))
else:
    summary = run()
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would hold the size of the bench
# process (and its localnet) this one was forked from.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print("RESULT " + json.dumps({"summary": summary, "peak_kib": peak, "cpu_seconds": cpu}))
"""
# The flow's default: 8 batches of 483 accounts, each sending its 23 transactions at once.
IN_FLIGHT = 8 * 23
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


def flow_process(chain: DemoChain, names: dict[str, str], size: int) -> tuple[float, dict]:
    """(wall seconds, {"summary", "peak_kib"}) of the flow run in a process of its own."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    # The API this process uses (the bench runner's local server unless one is set), so
    # the flow process starts no server of its own.
    api = get_current_settings().api.url or SubprocessASGIServer().api_url
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "DATABASE_URL": f"sqlite:///{Path(tempfile.mkdtemp()) / f'bench-{size}.db'}",
        "RUNBOOKS_CREATE_DATABASE": "1",
        "PYTHONPATH": str(REPO),
        # INFO: Prefect logs task retries (and their causes) at INFO; a few lines per batch.
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    with stopwatch() as elapsed:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                FLOW_PROCESS,
                str(chain.program_id),
                names["cluster_block"],
                names["fee_payer_block"],
                str(size),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = elapsed()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the flow process failed: {done.stderr[-2000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    # Prefect logs each task retry with its cause (at WARNING and above).
    result["retries"] = [line for line in done.stderr.splitlines() if "Retry " in line]
    return wall, result


async def flow_run(chain: DemoChain, names: dict[str, str], **params: object) -> dict:
    from flows.migration import migrate_accounts

    return await migrate_accounts(
        program_id=str(chain.program_id),
        cluster_block=names["cluster_block"],
        fee_payer_block=names["fee_payer_block"],
        **params,
    )


def report_size(size: int, raw: float, transactions: int, wall: float, result: dict) -> None:
    """One size's figures, printed as soon as it is measured."""
    summary = result["summary"]
    seconds = summary["seconds"]
    heading(f"migration: {size:,} accounts, demo_vault v1 -> v2")
    figure(f"raw: {transactions} packed migrate transactions over RPC", raw, "s")
    figure("raw rate", size / raw, "accounts/s")
    figure("flow: discover, snapshot, migrate, verify, record", seconds, "s")
    figure("  the flow process, start to exit (imports, Prefect client)", wall, "s")
    figure("flow rate", size / seconds, "accounts/s")
    figure("  migrate transactions the flow sent", summary["transactions"], "")
    figure(
        "  accounts a retried batch found migrated (nothing resent)", summary["found_migrated"], ""
    )
    figure("  task retries in the flow", len(result["retries"]), "")
    for line in result["retries"][:3]:
        print(f"    {line[:160]}")
    figure("flow rate / raw rate (goal >= 0.70)", raw / seconds, "")
    figure("  CPU time of the flow process (it had one core)", result["cpu_seconds"], "s")
    figure("peak RSS of the flow process", result["peak_kib"] / 1024, "MiB")


def _check_migrated(chain: DemoChain, vaults: list[Pubkey]) -> None:
    accounts = chain.server.localnet.get_accounts(vaults)
    assert all(
        a is not None and vault.layout_version(bytes(a.data)) == vault.VaultV2.VERSION
        for a in accounts
    ), "not every vault was migrated"


async def run() -> None:
    chain = start_demo_chain()
    measured: list[tuple[int, float, int, float, dict]] = []
    try:
        await upgrade_directly(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix="bench-migration")
        config = Pubkey.new_unique()

        for size in SIZES:
            raw_vaults = seed_vaults(chain, config, size)
            raw, transactions = await raw_sends(chain, raw_vaults)
            del raw_vaults

            flow_vaults = seed_vaults(chain, config, size)
            # The flow process blocks this thread; the localnet serves from its own.
            wall, result = await asyncio.to_thread(flow_process, chain, names, size)
            # A batch retried after its migrates landed finds them migrated (and sends
            # nothing again): every account verified is what counts.
            assert result["summary"]["accounts"]["verified"] == size, result
            _check_migrated(chain, flow_vaults)
            del flow_vaults
            measured.append((size, raw, transactions, wall, result))
            report_size(size, raw, transactions, wall, result)

        naive_vaults = seed_vaults(chain, config, NAIVE_ACCOUNTS)
        with stopwatch() as elapsed:
            naive_result = await flow_run(chain, names, batch_size=1, accounts_per_transaction=1)
            naive = elapsed()
        assert naive_result["migrated_now"] == NAIVE_ACCOUNTS, naive_result
        _check_migrated(chain, naive_vaults)
    finally:
        chain.server.stop()

    small, large = measured[0], measured[-1]
    heading("migration: memory against the account count")
    ratio(
        f"peak RSS at {large[0]:,} / at {small[0]:,} (goal <= 1.2)",
        large[4]["peak_kib"],
        small[4]["peak_kib"],
    )
    heading(f"migration: naive, one task and one transaction per account ({NAIVE_ACCOUNTS:,})")
    figure("naive flow", naive, "s")
    figure("naive rate", NAIVE_ACCOUNTS / naive, "accounts/s")
    small_rate = small[0] / small[4]["summary"]["seconds"]
    ratio(f"flow rate ({small[0]:,}) / naive rate", small_rate, NAIVE_ACCOUNTS / naive)


def main() -> None:
    os.environ["DATABASE_URL"] = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench-records.db'}"
    # A scratch database this bench creates (an explicit DATABASE_URL is otherwise refused
    # unless it names an existing records database).
    os.environ["RUNBOOKS_CREATE_DATABASE"] = "1"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    asyncio.run(run())


if __name__ == "__main__":
    main()

"""The upgrade and the 10,000-account migration on the localnet's cluster-like mode
(400 ms slots, landing 1-2 slots after sending, 5 % of sends dropped, a request limit),
each beside the same run on the instant localnet and beside the floor the slot clock
allows.

- Upgrade (demo, keypair backend; waits for sign-offs and the timelock excluded): the
  floor is the flow's sequential confirmed writes (counted in the write-ahead journal)
  times the slots one write needs at best: landing in the next slot, then confirmed
  ``confirmation_lag_slots`` later.
- Migration of 10,000 v1 vaults (called as bench_migration calls it): the floor is the
  migrate transactions needed over the transactions that can land per slot: the flow
  keeps ``IN_FLIGHT`` of them in flight, and each holds its place for at least the
  landing and confirmation slots.

The vaults are written straight into the SVM and the buffer is written before the clock
starts: setting up is not measured. The records go to a scratch SQLite file.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from pathlib import Path

from solders.pubkey import Pubkey

from benches._report import figure, heading, ratio, stopwatch
from benches.bench_migration import ACCOUNTS, IN_FLIGHT, flow_run
from localnet.cluster_mode import ClusterBehaviour
from programs.demo_vault import client as vault
from runbooks.demo import run_upgrade, save_blocks, start_demo_chain, write_buffer
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.db import create_engine, migrate
from store.records.transactions import transactions_like

# The cluster: 400 ms slots and the default drops (5 %); a fixed seed so two runs
# of the bench meet the same drops.
CLUSTER = ClusterBehaviour(slot_seconds=0.4, seed=12)
RUNS = 2


def best_write_seconds(behaviour: ClusterBehaviour) -> float:
    """The least time one confirmed write takes: it lands in the next slot at the
    earliest and is confirmed ``confirmation_lag_slots`` after."""
    slots = behaviour.landing_slots[0] + behaviour.confirmation_lag_slots
    return slots * behaviour.slot_seconds


def journal_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        return len(transactions_like(engine, ""))
    finally:
        engine.dispose()


async def upgrade(behaviour: ClusterBehaviour | None, url: str) -> tuple[float, float, int, float]:
    """(wall seconds, seconds waiting, chain writes the run journalled, wall seconds with
    the waits excluded) of one upgrade."""
    chain = start_demo_chain(behaviour=behaviour)
    try:
        buffer = await write_buffer(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix="bench-cluster", timelock_seconds=0)
        before = journal_rows(url)
        with stopwatch() as elapsed:
            result = await run_upgrade(chain, buffer, chain.members[:3], names)
            wall = elapsed()
        waiting = result["seconds_waiting"]
        return wall, waiting, journal_rows(url) - before, wall - waiting
    finally:
        chain.server.stop()


async def migration(behaviour: ClusterBehaviour | None) -> tuple[float, dict | str, int]:
    """(wall seconds, the flow's result or why it failed, vaults at v2 on chain) of
    migrating ``ACCOUNTS`` v1 vaults. A failed run is a figure too: the bench says so."""
    chain = start_demo_chain(behaviour=behaviour)
    try:
        await upgrade_directly(chain, chain.binaries["v2"])
        names = await save_blocks(chain, prefix="bench-cluster-migration")
        vaults = seed_vaults(chain, Pubkey.new_unique(), ACCOUNTS)
        with stopwatch() as elapsed:
            try:
                result: dict | str = await flow_run(chain, names)
            except Exception as exc:  # reported beside the figures, not a crash of the bench
                result = f"{type(exc).__name__}: {exc}"
            wall = elapsed()
        migrated = sum(
            a is not None and vault.layout_version(bytes(a.data)) == vault.VaultV2.VERSION
            for a in chain.server.localnet.get_accounts(vaults)
        )
        if isinstance(result, dict):
            assert result["migrated_now"] == ACCOUNTS == migrated, result
        return wall, result, migrated
    finally:
        chain.server.stop()


def main() -> None:
    os.environ.setdefault("RUNBOOKS_PAUSE_POLL_SECONDS", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench-cluster-records.db'}"
    engine = create_engine(url)
    migrate(engine)  # an explicit DATABASE_URL names an existing records database
    engine.dispose()
    os.environ["DATABASE_URL"] = url
    write = best_write_seconds(CLUSTER)

    heading(
        f"cluster-like: upgrade flow, waits excluded (slots {CLUSTER.slot_seconds} s, "
        f"{CLUSTER.drop_fraction:.0%} dropped)"
    )
    # Best of RUNS: one run's pauses and polls vary by a second or more on a busy machine.
    instant = min(asyncio.run(upgrade(None, url))[3] for _ in range(RUNS))
    runs = [asyncio.run(upgrade(CLUSTER, url)) for _ in range(RUNS)]
    clustered = min(run[3] for run in runs)
    writes = max(run[2] for run in runs)
    floor = writes * write
    figure(f"instant localnet, best of {RUNS}", instant, "s")
    figure(f"cluster-like localnet, best of {RUNS}", clustered, "s")
    figure(f"floor: {writes} sequential confirmed write(s) x {write:.1f} s", floor, "s")
    ratio("cluster-like / instant", clustered, instant)
    figure("cluster-like time above the floor", clustered - floor, "s")

    heading(f"cluster-like: migration of {ACCOUNTS:,} accounts")
    instant, done, _ = asyncio.run(migration(None))
    assert isinstance(done, dict), done
    clustered, result, migrated = asyncio.run(migration(CLUSTER))
    # The transactions needed: as many as the instant run sent (the same packing).
    needed = done["transactions"]
    per_slot = IN_FLIGHT / (CLUSTER.landing_slots[0] + CLUSTER.confirmation_lag_slots)
    floor = math.ceil(needed / per_slot) * CLUSTER.slot_seconds
    figure("instant localnet", instant, "s")
    figure(
        f"floor: {needed} transactions / {per_slot:.0f} per slot x {CLUSTER.slot_seconds} s",
        floor,
        "s",
    )
    if isinstance(result, str):
        figure(f"cluster-like localnet: FAILED with {migrated:,} migrated, after", clustered, "s")
        print(f"  {result[:300]}")
        return
    figure("cluster-like localnet", clustered, "s")
    figure("cluster-like rate", ACCOUNTS / clustered, "accounts/s")
    landed = result["transactions"] / (clustered / CLUSTER.slot_seconds)
    figure("  migrate transactions landed per slot, measured", landed, "")
    ratio("cluster-like / instant", clustered, instant)
    ratio("cluster-like / floor", clustered, floor)


if __name__ == "__main__":
    main()

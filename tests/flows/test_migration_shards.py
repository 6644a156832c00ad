"""The migration fanned out in shards across process workers, with real parts:
`prefect server start` on PostgreSQL, the ``runbooks`` pool, `prefect deploy --all`, two
`prefect worker start` processes (one run at a time each), records on PostgreSQL and the
localnet of this process. The parent flow runs here; its shard runs on the workers.

Then a worker is killed (SIGKILL, with its flow run's process) mid-shard. Its run stays
Running; the test marks it Crashed at once, standing in for the crash automation (which
waits 120 s without heartbeats), and the parent is rerun: the finished shard finds
nothing left, the killed one resumes on the other worker, and every account is migrated
exactly once, each record naming the signature that landed it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from landed import signatures_by_account
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.exceptions import ParameterTypeError
from prefect.states import Crashed
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_migration_flow import MIGRATE

from core.errors import InputError, MigrationError
from domain.migration import in_shard
from flows.migration import migration_key
from flows.migration_fanout import migrate_accounts_sharded
from programs.demo_vault.plugins import DemoVaultMigrator
from runbooks.demo import DemoChain, save_blocks, start_demo_chain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from runbooks.worker_stack import WorkerStack, worker_stack
from store.records import migrations
from store.testing import postgres_unavailable_reason

# Never beside another exclusive test: process workers on a real `prefect server start`.
pytestmark = pytest.mark.exclusive

# ~300 a shard: several reads of 100 accounts each, and a shard caught after 100 verified
# still has two thirds to do when its worker is killed.
ACCOUNTS = 600
SHARDS = 2


@pytest.fixture
def postgres_required() -> None:
    reason = postgres_unavailable_reason()
    if reason is not None:
        if os.environ.get("TEST_POSTGRES_REQUIRED", "").strip() not in ("", "0"):
            pytest.fail(f"the Prefect server's PostgreSQL: {reason}")
        pytest.skip(f"the Prefect server's PostgreSQL: {reason}")


def shard_keys(chain: DemoChain) -> list[str]:
    m = DemoVaultMigrator()
    return [
        migration_key(
            "localnet",
            str(chain.program_id),
            m.name,
            m.source_version,
            m.target_version,
            (i, SHARDS),
        )
        for i in range(SHARDS)
    ]


def exactly_once(chain: DemoChain, records_db: Engine, vaults: list[Pubkey]) -> None:
    """One landed migrate per vault (the localnet's history); each vault recorded verified,
    in its own shard's migration, naming that signature."""
    landed = signatures_by_account(chain.server.localnet, chain.program_id, MIGRATE, 0)
    assert set(landed) == {str(v) for v in vaults}
    twice = {a: s for a, s in landed.items() if len(s) != 1}
    assert not twice, f"migrated more than once: {list(twice.items())[:3]}"
    recorded: dict[str, tuple[str, str | None]] = {}
    for i, key in enumerate(shard_keys(chain)):
        run = migrations.get_migration_by_key(records_db, key)
        assert run is not None and run.status == "completed", (i, run)
        states = migrations.account_states(records_db, run.id)
        assert all(in_shard(a, i, SHARDS) for a in states), f"shard {i} holds another's account"
        recorded.update({a: (s.status, s.signature) for a, s in states.items()})
    assert recorded == {a: ("verified", sigs[0]) for a, sigs in landed.items()}


def params(chain: DemoChain, names: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "program_id": str(chain.program_id),
        "shards": SHARDS,
        "cluster_block": names["cluster_block"],
        "fee_payer_block": names["fee_payer_block"],
        "poll_seconds": 0.5,
        **extra,
    }


async def shard_runs(client: Any) -> list[Any]:
    return list(
        await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["migration-shard"]))
        )
    )


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_shards_on_two_workers_migrate_once_even_with_a_worker_killed_mid_shard(
    postgres_required: None,
    chain: DemoChain,
    demo_binaries: dict[str, bytes],
    records_db: Engine,
    db_url: str,
    tmp_path: Path,
) -> None:
    vaults = seed_vaults(chain, Pubkey.new_unique(), ACCOUNTS, spread=True)
    await upgrade_directly(chain, chain.binaries["v2"])
    async with worker_stack(tmp_path, records_url=db_url, workers_count=2) as stack:
        names = await save_blocks(chain, prefix="shards")

        # 1. Two shards, two workers: each takes one, every account once.
        result = await migrate_accounts_sharded(**params(chain, names))
        assert result["failed_shards"] == []
        assert result["accounts"] == {
            "pending": 0,
            "migrated": 0,
            "verified": ACCOUNTS,
            "failed": 0,
        }
        runs = [row["flow_run"] for row in result["shard_runs"]]
        assert all(row["state"] == "COMPLETED" for row in result["shard_runs"])
        workers_of = await stack.ran_by(runs)
        assert {workers_of[r] for r in runs} == {"runbooks-worker-1", "runbooks-worker-2"}
        async with get_client() as client:
            for run_id in runs:  # subflows of the parent run, as the UI shows them
                assert (await client.read_flow_run(run_id)).parent_task_run_id is not None
        exactly_once(chain, records_db, vaults)

        # 2. A second program's migration; a worker killed in the middle of its shard.
        other = start_demo_chain(binaries=demo_binaries)
        try:
            await killed_worker_case(stack, other, records_db)
        finally:
            other.server.stop()


async def killed_worker_case(stack: WorkerStack, chain: DemoChain, records_db: Engine) -> None:
    vaults = seed_vaults(chain, Pubkey.new_unique(), ACCOUNTS, spread=True)
    await upgrade_directly(chain, chain.binaries["v2"])
    names = await save_blocks(chain, prefix="shards-killed")
    # Small batches one at a time: the shard lasts long enough to be killed in it.
    slow = params(chain, names, batch_size=20, concurrency=1)
    keys = shard_keys(chain)
    parent = asyncio.ensure_future(migrate_accounts_sharded(**slow))
    victim_run, shard = await a_shard_half_done(records_db, keys, parent)
    async with get_client() as client:
        run = await client.read_flow_run(victim_run)
        worker_name = (await stack.ran_by([str(victim_run)]))[str(victim_run)]
        worker = stack.running[int(worker_name.rsplit("-", 1)[1]) - 1]
        worker.send_signal(signal.SIGKILL)  # the worker first: it reports nothing
        worker.wait(timeout=30)
        assert run.infrastructure_pid, "the worker recorded no process for the run"
        os.kill(int(str(run.infrastructure_pid).rsplit(":", 1)[-1]), signal.SIGKILL)
        await asyncio.sleep(2)
        record = migrations.get_migration_by_key(records_db, keys[shard])
        assert record is not None
        at_kill = migrations.migration_counts(records_db, record.id)
        in_shard_total = sum(in_shard(str(v), shard, SHARDS) for v in vaults)
        assert 0 < at_kill["verified"] < in_shard_total, at_kill
        assert (await client.read_flow_run(victim_run)).state.is_running()

        # While the killed shard's run still looks alive, a second parent starts nothing.
        before = len(await shard_runs(client))
        with pytest.raises(
            MigrationError, match=rf"still run: .*{shard}/{SHARDS} \(flow run {victim_run}"
        ):
            await migrate_accounts_sharded(**slow)
        assert len(await shard_runs(client)) == before

        # What the crash automation does after 120 s without heartbeats.
        await client.set_flow_run_state(victim_run, Crashed(), force=True)
        with pytest.raises(MigrationError, match=rf"shards {shard}/{SHARDS} of the migration"):
            await asyncio.wait_for(parent, 120)

        # The rerun: the finished shard finds nothing left, the killed one resumes on the
        # surviving worker.
        result = await migrate_accounts_sharded(**params(chain, names))
    assert result["failed_shards"] == []
    assert result["accounts"]["verified"] == ACCOUNTS
    survivor = {"runbooks-worker-1", "runbooks-worker-2"} - {worker_name}
    reruns = [row["flow_run"] for row in result["shard_runs"]]
    workers_of = await stack.ran_by(reruns)
    assert {workers_of[r] for r in reruns} == survivor
    exactly_once(chain, records_db, vaults)


async def a_shard_half_done(
    records_db: Engine, keys: list[str], parent: asyncio.Future[Any]
) -> tuple[str, int]:
    """(flow run id, shard) of a shard with 100+ accounts verified and more to do."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert not parent.done(), parent
        for i, key in enumerate(keys):
            record = migrations.get_migration_by_key(records_db, key)
            if record is None or record.flow_run_id is None:
                continue
            counts = migrations.migration_counts(records_db, record.id)
            if counts["verified"] >= 100 and counts["pending"] + counts["migrated"] > 0:
                return record.flow_run_id, i
        await asyncio.sleep(0.05)
    raise AssertionError("no shard got under way")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_bad_parameters_are_refused_before_any_shard_starts(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    base = params(chain, block_names)
    async with get_client() as client:
        before = len(await shard_runs(client))
        for shards in (0, 257):
            with pytest.raises(ParameterTypeError, match="shards"):
                await migrate_accounts_sharded(**{**base, "shards": shards})
        with pytest.raises(InputError, match="program id"):
            await migrate_accounts_sharded(**{**base, "program_id": "not-a-key"})
        with pytest.raises(InputError, match="'flow name/deployment name'"):
            await migrate_accounts_sharded(**base, deployment_name="migrate")
        with pytest.raises(InputError, match="is not on the Prefect server"):
            await migrate_accounts_sharded(**base, deployment_name="account-migration/nope")
        assert len(await shard_runs(client)) == before
    assert migrations.get_migration_by_key(records_db, shard_keys(chain)[0]) is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_migration_refuses_a_bad_shard_before_recording_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    from flows.migration import migrate_accounts

    seed_vaults(chain, Pubkey.new_unique(), 10, spread=True)
    base = {k: v for k, v in params(chain, block_names).items() if k in ("program_id",)}
    for bad in ("2/2", "0/0", "half"):
        with pytest.raises(InputError, match=r'"i/N"'):
            await migrate_accounts(
                **base,
                cluster_block=block_names["cluster_block"],
                fee_payer_block=block_names["fee_payer_block"],
                shard=bad,
            )
    assert all(migrations.get_migration_by_key(records_db, k) is None for k in shard_keys(chain))

"""The sharded migration on Dask instead of Prefect workers, with real parts: a Dask
LocalCluster of two worker processes (the flow's own, then one started here whose
scheduler address the flow is given), the localnet of this process, the Prefect API and
records on SQLite and PostgreSQL. Each shard's migration runs as a subflow inside a Dask
worker process; exactly-once rests on the records and the journal, as with workers.
"""

from __future__ import annotations

from typing import Any

import pytest
from distributed import LocalCluster
from landed import landed_signatures
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_migration_shards import SHARDS, exactly_once, params, shard_keys, shard_runs

from core.errors import InputError
from core.http_server import free_port
from flows.migration_fanout import migrate_accounts_sharded
from runbooks.demo import DemoChain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.records import migrations

# Never beside another exclusive test: a Dask cluster of worker processes.
pytestmark = pytest.mark.exclusive

ACCOUNTS = 200


# PostgreSQL records only, as in the workers fan-out test: what a multi-process layout
# uses (each case starts two LocalClusters).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_shards_on_dask_migrate_every_account_once_and_a_rerun_sends_nothing(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
) -> None:
    vaults = seed_vaults(chain, Pubkey.new_unique(), ACCOUNTS, spread=True)
    await upgrade_directly(chain, chain.binaries["v2"])
    base: dict[str, Any] = params(chain, block_names, runner="dask")

    # The flow's own LocalCluster (one process per shard), torn down when it ends.
    result = await migrate_accounts_sharded(**base)
    assert result["runner"] == "dask"
    assert result["failed_shards"] == []
    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": ACCOUNTS, "failed": 0}
    assert [r["state"] for r in result["shard_runs"]] == ["COMPLETED"] * SHARDS
    async with get_client() as client:
        for i, row in enumerate(result["shard_runs"]):
            run = await client.read_flow_run(row["flow_run"])
            # A subflow of the shard's task run, tagged like a worker's shard run, and
            # the run its migration record names.
            assert run.parent_task_run_id is not None
            assert set(run.tags) >= {"migration-shard", shard_keys(chain)[i]}
            record = migrations.get_migration_by_key(records_db, shard_keys(chain)[i])
            assert record is not None and record.flow_run_id == row["flow_run"]
    exactly_once(chain, records_db, vaults)

    # A rerun on a cluster a team keeps running, by its scheduler's address (started after
    # DATABASE_URL is set: its workers inherit it): nothing left, nothing sent.
    sent = landed_signatures(chain.server.localnet)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        again = await migrate_accounts_sharded(**base, dask_address=cluster.scheduler_address)
    assert again["failed_shards"] == []
    assert again["accounts"]["verified"] == ACCOUNTS
    assert [r["state"] for r in again["shard_runs"]] == ["COMPLETED"] * SHARDS
    assert landed_signatures(chain.server.localnet) == sent
    exactly_once(chain, records_db, vaults)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_bad_runner_input_is_refused_before_any_record_or_chain_write(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    seed_vaults(chain, Pubkey.new_unique(), 20, spread=True)
    await upgrade_directly(chain, chain.binaries["v2"])
    base = params(chain, block_names)
    sent = landed_signatures(chain.server.localnet)
    async with get_client() as client:
        before = len(await shard_runs(client))
        with pytest.raises(ParameterTypeError, match="runner"):
            await migrate_accounts_sharded(**base, runner="ray")
        with pytest.raises(InputError, match="dask_address is for runner 'dask'"):
            await migrate_accounts_sharded(**base, dask_address="tcp://127.0.0.1:8786")
        # Nothing listens there: refused after the (read-only) discovery, before any shard.
        nobody = f"tcp://127.0.0.1:{free_port()}"
        with pytest.raises(
            InputError, match=rf"Dask scheduler at '{nobody}' could not be reached.*nothing"
        ):
            await migrate_accounts_sharded(**base, runner="dask", dask_address=nobody)
        assert len(await shard_runs(client)) == before
    assert all(migrations.get_migration_by_key(records_db, k) is None for k in shard_keys(chain))
    assert landed_signatures(chain.server.localnet) == sent

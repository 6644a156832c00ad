"""Runbook: one account migration fanned out across workers, one shard per child run.

1. Check every parameter, the kill switch, the migration deployment, and that no shard of
   this migration still runs (a second run of a shard would race the first).
2. Discover the accounts on the old layout (reads only) and count them per shard: a shard
   with none that was never recorded has nothing to do and is not started.
3. Start one flow run of the migration deployment (``account-migration/migrate`` on the
   ``runbooks`` work pool) per shard "i/N", as subflows of this run: the pool's workers,
   on as many machines, take them. Each shard is its own migration record (the shard is
   part of its key), so shards never touch each other's accounts. With
   ``runner="dask"`` each shard is instead a task on a Dask cluster (a LocalCluster of
   one process per shard, or the scheduler at ``dask_address``) that runs the migration
   as its subflow: the same record, key and journal, so exactly-once holds the same way.
4. Wait for all of them, then report from the records: one table of every shard (its
   run, state, migration and account counts) and the totals. Failed, crashed or cancelled
   shards fail this run, named.

Rerun it after a failure or a lost worker: finished shards find nothing left (quick),
unfinished ones resume from their records and the chain, as ``migrate_accounts`` does.
A worker killed mid-shard leaves its run Running until the crash automation
(runbooks/crash_watch.py) marks it Crashed and reschedules it on another worker; a
rerun of this flow refuses while that shard still runs, naming its run.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Annotated, Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect_dask import DaskTaskRunner
from pydantic import Field

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import InputError, MigrationError
from core.keys import parse_pubkey, parse_sha256
from domain.forms import titled_form
from domain.migration import MAX_SHARDS, shard_of_key
from domain.report import fields_table
from flows.migration import migration_key
from programs.plugin import get_migrator
from store.records import migrations
from tasks import kill_switch
from tasks import migration as tasks
from tasks.migration import BATCH_LIMIT, DEFAULT_BATCH_SIZE
from tasks.records import records_engine

MIGRATE_DEPLOYMENT = "account-migration/migrate"
# A shard's run in one of these states may still migrate: no second run of it starts.
LIVE = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
]
# How long a Dask scheduler at ``dask_address`` has to answer before the run refuses.
DASK_CONNECT_SECONDS = 10


@flow(name="account-migration-sharded", persist_result=False)
@titled_form
async def migrate_accounts_sharded(
    program_id: str,
    shards: Annotated[int, Field(ge=1, le=MAX_SHARDS)] = 2,
    migrator: str = "demo_vault",
    expected_program_sha256: str | None = None,
    retry_failed: bool = False,
    reverify: bool = False,
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8,
    batch_size: Annotated[int, Field(ge=1, le=BATCH_LIMIT)] = DEFAULT_BATCH_SIZE,
    accounts_per_transaction: Annotated[int | None, Field(ge=1)] = None,
    cluster_block: str = "localnet",
    fee_payer_block: str = "localnet-fee-payer",
    deployment_name: str = MIGRATE_DEPLOYMENT,
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0,
    runner: Literal["workers", "dask"] = "workers",
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Migrate a program's accounts in ``shards`` child runs that the work pool's workers
    share; one report over all of them. Rerun to resume.

    Args:
        program_id: The program whose accounts to migrate (base58 address).
        shards: How many shards (1-256), each a flow run of the migration deployment.
        migrator: As for the migration runbook.
        expected_program_sha256: As for the migration runbook.
        retry_failed: As for the migration runbook.
        reverify: As for the migration runbook.
        concurrency: Batches at once within each shard.
        batch_size: Accounts per batch.
        accounts_per_transaction: As for the migration runbook.
        cluster_block: The SolanaCluster block of the cluster to migrate on.
        fee_payer_block: The SolanaKeypair block that pays the transaction fees.
        deployment_name: The migration deployment the shards run as ("flow/deployment").
        poll_seconds: How often the shards' states are read while waiting.
        runner: "workers": each shard a run of the deployment on the work pool;
            "dask": each shard a task on a Dask cluster, its migration a subflow there.
        dask_address: With runner "dask", the scheduler of a running Dask cluster
            ("tcp://host:8786"); empty: a LocalCluster of one process per shard (up to
            the CPU count) on this machine for this run.
    """
    started = time.monotonic()
    logger = get_run_logger()
    # 1. Everything checked before anything starts.
    if not 1 <= shards <= MAX_SHARDS:
        raise InputError(f"shards {shards}: give 1 to {MAX_SHARDS}; nothing was started")
    parse_pubkey(program_id, "program id")
    dask_address = (dask_address or "").strip() or None
    if dask_address and runner != "dask":
        raise InputError(
            f"dask_address is for runner 'dask', not {runner!r}: drop it or set "
            "runner='dask'; nothing was started"
        )
    if expected_program_sha256:
        expected_program_sha256 = parse_sha256(expected_program_sha256, "expected_program_sha256")
    m = get_migrator(migrator)
    cluster = await load_block(SolanaCluster, cluster_block)
    await load_block(SolanaKeypair, fee_payer_block)
    kill_switch.check_kill_switch(cluster.cluster, program_id, "account migration")
    keys = [
        migration_key(
            cluster.cluster,
            program_id,
            m.name,
            m.source_version,
            m.target_version,
            (i, shards),
        )
        for i in range(shards)
    ]
    async with get_client() as client:
        if runner == "workers":
            await _check_deployment(client, deployment_name)
        live = await _live_shard_runs(client, keys)
    if live:
        raise MigrationError(
            "shards of this migration still run: "
            + ", ".join(f"{i}/{shards} (flow run {run_id}, {state})" for i, run_id, state in live)
            + "; wait for them, or, if their worker is gone, for the crash automation to "
            "mark them Crashed (or mark them so yourself); nothing was started"
        )

    # 2. Which shards have work: accounts on the old layout now, or a record to finish.
    discovered = await tasks.discover_accounts(cluster, program_id, m.name, m.source_version)
    per_shard = Counter(shard_of_key(key, shards) for key in discovered)
    engine = records_engine()
    recorded = {i: migrations.get_migration_by_key(engine, k) for i, k in enumerate(keys)}
    todo = [i for i in range(shards) if per_shard[i] or recorded[i] is not None]
    if not todo:
        raise MigrationError(
            f"no accounts of program {program_id} on layout v{m.source_version} of migrator "
            f"{m.name!r} were found on {cluster.cluster}, and no shard of an earlier "
            f"{shards}-shard migration of them is recorded: check the program id, the "
            "migrator, the cluster block and the number of shards; nothing was started"
        )
    logger.info(
        "%d accounts on layout v%d in %d shards; starting %d shard runs %s",
        len(discovered),
        m.source_version,
        shards,
        len(todo),
        f"of {deployment_name}" if runner == "workers" else f"on Dask ({dask_address or 'local'})",
    )

    # 3. One child run per shard; the pool's workers take them.
    common: dict[str, Any] = {
        "program_id": program_id,
        "migrator": migrator,
        "expected_program_sha256": expected_program_sha256,
        "retry_failed": retry_failed,
        "reverify": reverify,
        "concurrency": concurrency,
        "batch_size": batch_size,
        "accounts_per_transaction": accounts_per_transaction,
        "cluster_block": cluster_block,
        "fee_payer_block": fee_payer_block,
    }
    # Each shard: (its flow run, its final state).
    final: dict[int, tuple[str | None, str]]
    if runner == "dask":
        final = await asyncio.to_thread(
            _run_on_dask, {i: keys[i] for i in todo}, shards, common, dask_address
        )
    else:
        runs: dict[int, FlowRun] = {}
        for i in todo:
            runs[i] = await run_deployment(  # type: ignore[misc]
                deployment_name,
                parameters={**common, "shard": f"{i}/{shards}"},
                flow_run_name=f"shard-{i}-of-{shards}",
                tags=["migration-shard", keys[i]],
                timeout=0,
                as_subflow=True,
            )
        # 4. Wait for every shard.
        final = {
            i: (str(run.id), run.state.type.value if run.state else "?")
            for i, run in (await _wait(runs, poll_seconds)).items()
        }

    # Then report from the records.
    rows = []
    for i in range(shards):
        record = migrations.get_migration_by_key(engine, keys[i])
        counts = migrations.migration_counts(engine, record.id) if record else None
        flow_run, state = final.get(i, (None, "NOT STARTED"))
        rows.append(
            {
                "shard": f"{i}/{shards}",
                "accounts_on_old_layout": per_shard[i],
                "flow_run": flow_run,
                "state": state,
                "migration_id": record.id if record else None,
                "status": record.status if record else None,
                "accounts": counts,
            }
        )
    totals: Counter[str] = Counter()
    for row in rows:
        totals.update(row["accounts"] or {})
    failed = [r["shard"] for r in rows if r["state"] not in ("COMPLETED", "NOT STARTED")]
    summary: dict[str, Any] = {
        "program_id": program_id,
        "migrator": m.name,
        "shards": shards,
        "runner": runner,
        "discovered": len(discovered),
        "accounts": {s: totals[s] for s in ("pending", "migrated", "verified", "failed")},
        "shard_runs": rows,
        "failed_shards": failed,
        "seconds": round(time.monotonic() - started, 2),
    }
    await _publish(summary, cluster.cluster, m.source_version, m.target_version)
    if failed:
        raise MigrationError(
            f"shards {', '.join(failed)} of the migration of {program_id} did not complete ("
            + ", ".join(f"{r['shard']}: {r['state']}" for r in rows if r["shard"] in failed)
            + "); the other shards went on. See each shard's run, fix the cause, and run "
            "this again: finished shards find nothing left, the others resume."
        )
    return summary


@task(name="migration-shard-on-dask", persist_result=False)
async def migrate_shard(key: str, shard: str, parameters: dict[str, Any]) -> tuple[str, str]:
    """One shard's migration, run as a subflow wherever Dask placed this task: (its flow
    run, its final state). Tagged like a worker's shard run, so a second parent sees it
    while it runs and refuses."""
    # Imported here, not at the top: Dask ships this function by value, and a flow it
    # reaches through globals arrives without its module (its parameter types unresolved).
    from flows.migration import migrate_accounts

    i, n = shard.split("/")
    with tags("migration-shard", key):
        state = await migrate_accounts.with_options(flow_run_name=f"shard-{i}-of-{n}")(
            **parameters, shard=shard, return_state=True
        )
    return str(state.state_details.flow_run_id), state.type.value


def _run_on_dask(
    keys: dict[int, str], shards: int, parameters: dict[str, Any], address: str | None
) -> dict[int, tuple[str | None, str]]:
    """Every shard of ``keys`` as a ``migrate_shard`` task on Dask; (flow run, state) of
    each once all are done. Blocks: the parent runs it in a thread."""
    if address:
        dask = DaskTaskRunner(address=address, client_kwargs={"timeout": DASK_CONNECT_SECONDS})
    else:
        dask = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": max(1, min(len(keys), os.cpu_count() or 1)),
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": "127.0.0.1:0",  # not the fixed 8787: hosts are shared
            }
        )
    with dask:
        try:
            dask.client  # noqa: B018 - connects (or starts the cluster) before any shard
        except Exception as exc:
            if address:
                raise InputError(
                    f"the Dask scheduler at {address[:80]!r} could not be reached within "
                    f"{DASK_CONNECT_SECONDS} s ({type(exc).__name__}): start it or fix "
                    "dask_address; nothing was started"
                ) from None
            raise MigrationError(
                f"a Dask LocalCluster could not be started on this machine "
                f"({type(exc).__name__}); give dask_address of a running cluster or run "
                "the shards on workers; nothing was started"
            ) from None
        futures = {
            i: dask.submit(
                migrate_shard,
                {"key": key, "shard": f"{i}/{shards}", "parameters": parameters},
            )
            for i, key in keys.items()
        }
        final: dict[int, tuple[str | None, str]] = {}
        for i, future in futures.items():
            try:
                final[i] = future.result()
            except Exception as exc:
                # The task itself failed (a lost worker past Dask's retries, an import
                # error there): no shard run to name; its record says how far it got.
                get_run_logger().error(
                    "shard %d/%d failed on Dask: %s: %s", i, shards, type(exc).__name__, exc
                )
                final[i] = (None, StateType.FAILED.value)
    return final


async def _check_deployment(client: Any, name: str) -> None:
    flow_name, sep, deployment = name.partition("/")
    if not sep or not flow_name or not deployment:
        raise InputError(
            f"deployment_name {name[:80]!r}: give 'flow name/deployment name' "
            f"(e.g. {MIGRATE_DEPLOYMENT!r}); nothing was started"
        )
    try:
        await client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise InputError(
            f"deployment {name[:80]!r} is not on the Prefect server: register prefect.yaml's "
            "deployments (`prefect deploy --all`) first; nothing was started"
        ) from None


async def _live_shard_runs(client: Any, keys: list[str]) -> list[tuple[int, UUID, str]]:
    """The shards (index, run id, state) with a run that may still migrate."""
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["migration-shard"]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=LIVE)),
        )
    )
    index = {k: i for i, k in enumerate(keys)}
    found = []
    for run in runs:
        for tag in run.tags:
            if tag in index:
                found.append((index[tag], run.id, run.state.type.value if run.state else "?"))
    return sorted(found)


async def _wait(runs: dict[int, FlowRun], poll_seconds: float) -> dict[int, FlowRun]:
    """Every shard's run once it reached a final state (Crashed included: a rerun resumes)."""
    final: dict[int, FlowRun] = {}
    async with get_client() as client:
        while len(final) < len(runs):
            for i, run in runs.items():
                if i in final:
                    continue
                current = await client.read_flow_run(run.id)
                if current.state is not None and current.state.is_final():
                    final[i] = current
            if len(final) < len(runs):
                await asyncio.sleep(poll_seconds)
    return final


async def _publish(summary: dict[str, Any], cluster: str, source: int, target: int) -> None:
    counts = summary["accounts"]
    lines = [
        f"# Sharded migration: {summary['migrator']} v{source} -> v{target}",
        "",
        *fields_table(
            [
                ("Cluster", cluster),
                ("Program", f"`{summary['program_id']}`"),
                (f"On v{source} when this run started", summary["discovered"]),
                ("Shards", summary["shards"]),
                ("Verified", counts["verified"]),
                ("Migrated, not verified", counts["migrated"]),
                ("Pending", counts["pending"]),
                ("Failed", counts["failed"]),
                ("Failed shards", ", ".join(summary["failed_shards"]) or "none"),
                ("Seconds", summary["seconds"]),
            ]
        ),
        "",
        "| Shard | On old layout | Flow run | State | Migration | Verified | Pending | Failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["shard_runs"]:
        c = row["accounts"] or {}
        lines.append(
            f"| {row['shard']} | {row['accounts_on_old_layout']} | {row['flow_run'] or '-'} "
            f"| {row['state']} | {row['migration_id'] or '-'} | {c.get('verified', 0)} "
            f"| {c.get('pending', 0)} | {c.get('failed', 0)} |"
        )
    await acreate_markdown_artifact(
        key="sharded-migration-report",
        description=f"Sharded migration of {summary['program_id']}",
        markdown="\n".join(lines),
    )


__all__ = ["migrate_accounts_sharded"]

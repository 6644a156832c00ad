"""The migration flow killed with SIGKILL mid-batch, right after a batch's signatures were
written ahead (nothing of it sent yet) or right after its transactions were sent (landed,
not yet confirmed or recorded), then the same flow run restarted: it completes, one
migrate lands per account, and every account's record names the transaction that
migrated it, as the chain and the journal do.

The first run is a subprocess against the session's Prefect API and the localnet of this
process; the restart runs the same flow run here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from landed import signatures_by_account
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow_async
from prefect.settings import get_current_settings
from prefect.states import Scheduled
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_migration_flow import MIGRATE, _key, on_chain, params

from flows.migration import migrate_accounts
from programs.demo_vault import client as vault
from runbooks.demo import DemoChain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.records import migrations
from store.records import transactions as journal_records
from tasks.migration import migration_purpose

REPO = Path(__file__).resolve().parents[2]

# One flow run of the migration; KILL_AT=write-ahead:n kills the process right after the
# n-th batch's signatures are written ahead (before the first send), KILL_AT=sent:n right
# after the n-th batch's first sends (before any is confirmed or recorded).
FLOW_SCRIPT = """
import asyncio, json, os, signal, sys
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow_async
from flows.migration import migrate_accounts
from programs import send
from tasks import migration

where, _, nth = os.environ["KILL_AT"].partition(":")
seen = [0]

def counted():
    seen[0] += 1
    if seen[0] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)

if where == "write-ahead":
    original = migration.MigrationJournal.write_ahead
    def write_ahead_or_die(self, signed):
        original(self, signed)
        counted()
    migration.MigrationJournal.write_ahead = write_ahead_or_die
else:
    confirm = send.confirm
    async def confirm_or_die(client, pending, options, **kwargs):
        if pending and not kwargs.get("resend_first"):
            counted()
        return await confirm(client, pending, options, **kwargs)
    send.confirm = confirm_or_die

async def main():
    async with get_client() as client:
        run = await client.read_flow_run(UUID(sys.argv[1]))
    await run_flow_async(migrate_accounts, run, json.loads(sys.argv[2]), return_type="state")

asyncio.run(main())
"""


def records_agree_with_chain(
    chain: DemoChain, records_db: Engine, migration_id: int, vaults: list[Pubkey]
) -> None:
    """One landed migrate per vault; each vault's record names it; the journal holds
    every landed migrate as landed."""
    landed = signatures_by_account(chain.server.localnet, chain.program_id, MIGRATE, 0)
    assert set(landed) == {str(v) for v in vaults}
    assert {len(sigs) for sigs in landed.values()} == {1}, "a vault was migrated twice"
    states = migrations.account_states(records_db, migration_id)
    assert {a: (s.status, s.signature) for a, s in states.items()} == {
        a: ("verified", sigs[0]) for a, sigs in landed.items()
    }
    assert max(s.attempts for s in states.values()) == 1
    journal = journal_records.transactions(records_db, migration_purpose(migration_id))
    on_chain_sigs = {sigs[0] for sigs in landed.values()}
    assert {r.signature for r in journal if r.status == "landed"} == on_chain_sigs
    assert not [r for r in journal if r.status == "sent"], "the journal left unsettled rows"


@pytest.mark.parametrize("kill_at", ["write-ahead:3", "sent:3"])
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_mid_batch_the_restart_migrates_once_and_records_every_signature(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    db_url: str,
    kill_at: str,
) -> None:
    total = 600
    vaults = seed_vaults(chain, Pubkey.new_unique(), total)
    await upgrade_directly(chain, chain.binaries["v2"])
    # Batches of 84 (4 transactions): the third batch is killed with others still to run.
    parameters: dict[str, Any] = params(chain, block_names, concurrency=2, batch_size=100)
    async with get_client() as client:
        deployment = await migrate_accounts.ato_deployment(
            name=f"killed-{uuid.uuid4().hex[:8]}", parameters=parameters
        )
        flow_run = await client.create_flow_run_from_deployment(await deployment.apply())
        proc = subprocess.Popen(
            [sys.executable, "-c", FLOW_SCRIPT, str(flow_run.id), json.dumps(parameters)],
            cwd=REPO,
            env={
                **os.environ,
                "PREFECT_API_URL": get_current_settings().api.url or "",
                "DATABASE_URL": db_url,
                "PYTHONPATH": str(REPO),
                "PREFECT_LOGGING_LEVEL": "WARNING",
                "KILL_AT": kill_at,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.wait(timeout=120) == -signal.SIGKILL  # killed itself mid-batch
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)

        run = migrations.get_migration_by_key(records_db, _key(chain))
        assert run is not None
        journal = journal_records.transactions(records_db, migration_purpose(run.id))
        in_flight = [r for r in journal if r.status == "sent"]
        assert in_flight, "nothing was left in flight: the kill came too late"
        covered = {a for r in in_flight for a in (r.details or {})["accounts"]}
        states = migrations.account_states(records_db, run.id)
        assert all(states[a].status == "pending" and states[a].signature is None for a in covered)
        migrated = {
            str(v)
            for v, data in zip(vaults, on_chain(chain, vaults), strict=True)
            if isinstance(data, vault.VaultV2)
        }
        if kill_at.startswith("sent"):
            # Landed, yet recorded as nothing sent: what the restart must put right.
            assert covered <= migrated
        else:
            assert not covered & migrated
        assert len(migrated) < total, "killed after the last batch"

        await client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
        restarted = await client.read_flow_run(flow_run.id)
        state = await asyncio.wait_for(
            run_flow_async(migrate_accounts, restarted, parameters, return_type="state"), 240
        )
    assert state.is_completed(), state
    result = await state.result()
    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": total, "failed": 0}
    assert all(isinstance(v, vault.VaultV2) for v in on_chain(chain, vaults))
    records_agree_with_chain(chain, records_db, run.id, vaults)

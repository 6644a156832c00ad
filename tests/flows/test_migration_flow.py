"""The account migration runbook on a real Prefect API, a real localnet and real records:
a crash and resume in a killed process, a failing account, verification, kill switch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from landed import count_landed, signatures_by_account
from prefect.settings import get_current_settings
from solders.account import Account
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select

from core.errors import KillSwitchEngaged, MigrationError, VerificationFailed
from flows.migration import migrate_accounts
from programs.anchor import instruction_discriminator
from programs.demo_vault import client as vault
from runbooks.demo import DemoChain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.db import session_scope
from store.models import MigrationAccount
from store.records import kill_switch, migrations

REPO = Path(__file__).resolve().parents[2]
MIGRATE = instruction_discriminator("migrate")
RESUME_SCRIPT = """
import asyncio, sys
from flows.migration import migrate_accounts
asyncio.run(migrate_accounts(
    program_id=sys.argv[1], cluster_block=sys.argv[2], fee_payer_block=sys.argv[3],
    concurrency=2,
))
"""


def count_migrates(chain: DemoChain) -> Counter[str]:
    """Every migrate instruction that lands, per vault (the localnet in this process)."""
    return count_landed(chain.server.localnet, chain.program_id, MIGRATE, 0)


def on_chain(chain: DemoChain, vaults: list[Pubkey]) -> list[vault.VaultV1 | vault.VaultV2]:
    accounts = chain.server.localnet.get_accounts(vaults)
    return [vault.decode_vault(bytes(a.data)) for a in accounts if a is not None]


def statuses(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(MigrationAccount.status, func.count()).group_by(MigrationAccount.status)
        )
        return dict(rows.all())


async def artifact_data(key: str) -> str:
    """The newest artifact under ``key``, straight from the API (Prefect 3.8's client sends
    null filters its server refuses)."""
    api = get_current_settings().api.url or ""
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        resp = await http.post(
            "/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        )
        resp.raise_for_status()
        found = resp.json()
    assert found, f"no artifact {key}"
    return str(found[0]["data"])


def params(chain: DemoChain, names: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "program_id": str(chain.program_id),
        "cluster_block": names["cluster_block"],
        "fee_payer_block": names["fee_payer_block"],
        **extra,
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_killed_mid_migration_then_rerun_migrates_each_account_exactly_once(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine, db_url: str
) -> None:
    total = 2_400
    vaults = seed_vaults(chain, Pubkey.new_unique(), total)
    await upgrade_directly(chain, chain.binaries["v2"])
    landed = count_migrates(chain)
    env = {
        **os.environ,
        "PREFECT_API_URL": get_current_settings().api.url or "",
        "DATABASE_URL": db_url,
        "PYTHONPATH": str(REPO),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            str(chain.program_id),
            block_names["cluster_block"],
            block_names["fee_payer_block"],
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    try:
        while statuses(records_db).get("verified", 0) < 200:
            assert proc.poll() is None, "the migration ended before it could be killed"
            assert time.monotonic() < deadline, "the migration did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no cleanup, no finally: a crash
    finally:
        proc.wait(timeout=30)
    at_kill = statuses(records_db)
    still_v1 = sum(isinstance(v, vault.VaultV1) for v in on_chain(chain, vaults))
    assert 0 < still_v1 < total, f"killed too late or too early: {at_kill}, {still_v1} on v1"

    result = await migrate_accounts(**params(chain, block_names))

    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": total, "failed": 0}
    assert result["migrated_now"] + result["found_migrated"] <= total
    migrated = on_chain(chain, vaults)
    assert all(isinstance(v, vault.VaultV2) for v in migrated)
    assert [v.balance for v in migrated] == list(range(total))  # seed_vaults: balance = index
    # Exactly once: one landed migrate per vault, across the killed run and the rerun.
    assert set(landed) == {str(v) for v in vaults}
    assert set(landed.values()) == {1}
    run = migrations.get_migration(records_db, result["migration_id"])
    assert run is not None and run.status == "completed"
    states = migrations.account_states(records_db, run.id)
    assert max(s.attempts for s in states.values()) == 1


async def test_a_failing_account_is_recorded_the_others_go_on_and_retry_failed_migrates_it(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    vaults = seed_vaults(chain, Pubkey.new_unique(), 120)
    net = chain.server.localnet
    bad = vaults[30]
    good_data = bytes(net.get_account(bad).data)  # type: ignore[union-attr]
    # A v1 vault of the wrong size: v2's migrate refuses it (AccountDidNotDeserialize).
    with net.lock:
        net.svm.set_account(
            bad,
            Account(
                net.minimum_balance_for_rent_exemption(96),
                good_data + bytes(8),
                chain.program_id,
                False,
                0,
            ),
        )
    await upgrade_directly(chain, chain.binaries["v2"])

    state = await migrate_accounts(**params(chain, block_names), return_state=True)
    assert state.is_failed()
    with pytest.raises(MigrationError, match=f"1 accounts failed \\({bad}: .*AccountDid"):
        await state.result()
    migrated = on_chain(chain, vaults)
    assert sum(isinstance(v, vault.VaultV2) for v in migrated) == 119
    run_id = migrations.get_migration_by_key(records_db, _key(chain)).id  # type: ignore[union-attr]
    failed = migrations.failed_accounts(records_db, run_id)
    assert [(f.address, f.attempts) for f in failed] == [(str(bad), 1)]
    assert "AccountDidNotDeserialize (3003)" in (failed[0].error or "")
    assert str(bad) in await artifact_data(f"migration-{run_id}-failures")

    # Without retry_failed the failed account is left alone (no second attempt).
    again = await migrate_accounts(**params(chain, block_names), return_state=True)
    assert again.is_failed()
    assert migrations.failed_accounts(records_db, run_id)[0].attempts == 1

    # The cause fixed, retry_failed migrates it; the snapshot taken first still verifies it.
    with net.lock:
        net.svm.set_account(
            bad,
            Account(
                net.minimum_balance_for_rent_exemption(88), good_data, chain.program_id, False, 0
            ),
        )
    result = await migrate_accounts(**params(chain, block_names, retry_failed=True))
    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": 120, "failed": 0}
    assert result["migrated_now"] == 1
    state_of_bad = migrations.account_states(records_db, run_id)[str(bad)]
    assert (state_of_bad.status, state_of_bad.attempts, state_of_bad.error) == ("verified", 2, None)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_mismatch_fails_the_run_and_names_the_account(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    vaults = seed_vaults(chain, Pubkey.new_unique(), 30, first_balance=100)
    await upgrade_directly(chain, chain.binaries["v2"])
    first = await migrate_accounts(**params(chain, block_names))
    assert first["accounts"]["verified"] == 30
    # Someone changes a migrated vault behind the runbook's back.
    net = chain.server.localnet
    victim = vaults[4]
    account = net.get_account(victim)
    assert account is not None
    data = bytearray(account.data)
    data[16:24] = (999).to_bytes(8, "little")  # layout v2: balance at offset 16
    with net.lock:
        net.svm.set_account(victim, Account(account.lamports, bytes(data), account.owner, False, 0))

    with pytest.raises(VerificationFailed, match=f"{victim}: balance is 999, snapshot says 104"):
        await migrate_accounts(**params(chain, block_names, reverify=True))
    run = migrations.get_migration_by_key(records_db, _key(chain))
    assert run is not None and run.status == "failed"
    failed = migrations.failed_accounts(records_db, run.id)
    assert [f.address for f in failed] == [str(victim)]
    assert (failed[0].error or "").startswith("verification: balance is 999")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_kill_switch_stops_a_migration_before_anything_is_recorded(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    seed_vaults(chain, Pubkey.new_unique(), 10)
    await upgrade_directly(chain, chain.binaries["v2"])
    kill_switch.engage_kill_switch(
        records_db, "localnet", str(chain.program_id), reason="exploit suspected", actor="oncall"
    )
    with pytest.raises(KillSwitchEngaged, match="account migration refused"):
        await migrate_accounts(**params(chain, block_names))
    assert migrations.get_migration_by_key(records_db, _key(chain)) is None
    assert statuses(records_db) == {}


def _key(chain: DemoChain) -> str:
    from flows.migration import migration_key

    return migration_key("localnet", str(chain.program_id), "demo_vault", 1, 2)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_program_with_no_accounts_to_migrate_is_not_reported_as_done(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    # The v2 binary is live but no vault was ever created: what a mistyped program id of
    # another deployed program, or the wrong migrator, looks like.
    await upgrade_directly(chain, chain.binaries["v2"])
    with pytest.raises(MigrationError, match=r"no accounts of program .* were found") as refused:
        await migrate_accounts(**params(chain, block_names))
    assert "check the program id, the migrator and the cluster block" in str(refused.value)
    assert migrations.get_migration_by_key(records_db, _key(chain)) is None
    assert statuses(records_db) == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_finished_migration_run_again_finds_nothing_and_succeeds(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    seed_vaults(chain, Pubkey.new_unique(), 30)
    await upgrade_directly(chain, chain.binaries["v2"])
    first = await migrate_accounts(**params(chain, block_names))
    again = await migrate_accounts(**params(chain, block_names))
    assert again["migration_id"] == first["migration_id"]
    assert (again["discovered"], again["worked_on"]) == (0, 0)
    assert again["accounts"]["verified"] == 30


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_failing_account_in_the_simulated_transaction_fails_alone(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    # A batch simulates its first largest transaction once: here that one holds the bad
    # account, so the simulation refuses before anything is signed, and each transaction
    # (then each account) is tried on its own.
    vaults = seed_vaults(chain, Pubkey.new_unique(), 50)
    net = chain.server.localnet
    bad = vaults[0]
    good_data = bytes(net.get_account(bad).data)  # type: ignore[union-attr]
    with net.lock:
        net.svm.set_account(
            bad,
            Account(
                net.minimum_balance_for_rent_exemption(96),
                good_data + bytes(8),
                chain.program_id,
                False,
                0,
            ),
        )
    await upgrade_directly(chain, chain.binaries["v2"])
    landed = signatures_by_account(net, chain.program_id, MIGRATE, 0)  # nothing yet
    assert landed == {}

    state = await migrate_accounts(**params(chain, block_names), return_state=True)

    assert state.is_failed()
    with pytest.raises(MigrationError, match=f"1 accounts failed \\({bad}: .*AccountDid"):
        await state.result()
    run = migrations.get_migration_by_key(records_db, _key(chain))
    assert run is not None
    states = migrations.account_states(records_db, run.id)
    assert (states[str(bad)].status, states[str(bad)].attempts) == ("failed", 1)
    assert states[str(bad)].signature is None
    landed = signatures_by_account(net, chain.program_id, MIGRATE, 0)
    assert set(landed) == {str(v) for v in vaults[1:]}
    assert {len(s) for s in landed.values()} == {1}
    assert {a: s.signature for a, s in states.items() if a != str(bad)} == {
        a: s[0] for a, s in landed.items()
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_two_shards_together_migrate_every_account_once(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    from solders.keypair import Keypair

    from domain.migration import in_shard

    # Random keys, as real accounts have: Pubkey.new_unique() keys start with 8 zero bytes
    # and would all fall in shard 0.
    net = chain.server.localnet
    rent = net.minimum_balance_for_rent_exemption(vault.VaultV1.SIZE)
    config = Pubkey.new_unique()
    vaults = [Keypair().pubkey() for _ in range(160)]
    with net.lock:
        for i, key in enumerate(vaults):
            data = vault.VaultV1(owner=Pubkey.new_unique(), config=config, balance=i).encode()
            net.svm.set_account(key, Account(rent, data, chain.program_id, False, 0))
    await upgrade_directly(chain, chain.binaries["v2"])
    first = await migrate_accounts(**params(chain, block_names, shard="0/2"))
    # Only shard 0's accounts moved; shard 1's are still on v1.
    zero = {str(v) for v in vaults if in_shard(str(v), 0, 2)}
    assert 0 < len(zero) < len(vaults)
    assert first["discovered"] == first["migrated_now"] == len(zero)
    assert {
        str(v)
        for v, d in zip(vaults, on_chain(chain, vaults), strict=True)
        if isinstance(d, vault.VaultV2)
    } == zero
    second = await migrate_accounts(**params(chain, block_names, shard="1/2"))
    assert second["migration_id"] != first["migration_id"]  # each shard its own record
    assert second["migrated_now"] == len(vaults) - len(zero)
    assert all(isinstance(v, vault.VaultV2) for v in on_chain(chain, vaults))
    landed = signatures_by_account(chain.server.localnet, chain.program_id, MIGRATE, 0)
    assert set(landed) == {str(v) for v in vaults}
    assert {len(s) for s in landed.values()} == {1}  # every account migrated once
    again = await migrate_accounts(**params(chain, block_names, shard="0/2"))
    assert (again["migration_id"], again["discovered"]) == (first["migration_id"], 0)

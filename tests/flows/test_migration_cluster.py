"""The migration flow against the localnet's cluster-like mode: slots on a clock,
transactions landing slots after sending, a tenth of them dropped silently, commitment
lag and a request rate limit. 2,000 accounts complete in one run, one migrate lands per
account, and every landed migrate's signature is in the records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from landed import signatures_by_account
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_migration_flow import MIGRATE, on_chain, params

from blocks import SolanaCluster
from flows.migration import migrate_accounts
from localnet.cluster_mode import ClusterBehaviour
from programs.demo_vault import client as vault
from runbooks.demo import DemoChain, start_demo_chain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.records import migrations
from store.records import transactions as journal_records
from tasks.migration import migration_purpose

BEHAVIOUR = ClusterBehaviour(
    slot_seconds=0.1, drop_fraction=0.1, requests_per_second=150.0, seed=12
)


@pytest.fixture
def chain(demo_binaries: dict[str, bytes]) -> Iterator[DemoChain]:
    """The flows' demo chain (block_names builds on it), cluster-like."""
    chain = start_demo_chain(binaries=demo_binaries, behaviour=BEHAVIOUR)
    yield chain
    chain.server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_2000_account_migration_completes_on_a_cluster_like_localnet(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    total = 2_000
    vaults = seed_vaults(chain, Pubkey.new_unique(), total)
    await upgrade_directly(chain, chain.binaries["v2"])
    # The client spaces its requests under the cluster's limit, as on a real provider.
    cluster = await SolanaCluster.aload(block_names["cluster_block"])
    cluster.requests_per_second = 100
    await cluster.asave(block_names["cluster_block"], overwrite=True)
    net = chain.server.localnet
    slot_before = net.slot

    result = await migrate_accounts(**params(chain, block_names))

    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": total, "failed": 0}
    assert result["migrated_now"] == total
    migrated = on_chain(chain, vaults)
    assert all(isinstance(v, vault.VaultV2) for v in migrated)
    assert [v.balance for v in migrated] == list(range(total))
    landed = signatures_by_account(net, chain.program_id, MIGRATE, 0)
    assert set(landed) == {str(v) for v in vaults}
    assert {len(sigs) for sigs in landed.values()} == {1}  # one migrate per account
    states = migrations.account_states(records_db, result["migration_id"])
    assert {a: s.signature for a, s in states.items()} == {a: s[0] for a, s in landed.items()}
    journal = journal_records.transactions(records_db, migration_purpose(result["migration_id"]))
    assert {r.signature for r in journal if r.status == "landed"} == {s[0] for s in landed.values()}
    assert not [r for r in journal if r.status == "sent"]
    # The clock really ran: the transactions landed over many slots, not in one.
    assert net.slot - slot_before > 20


async def test_a_keys_only_discovery_passes_where_a_full_scan_is_refused(
    demo_binaries: dict[str, bytes],
) -> None:
    # 300 v1 vaults hold 26,400 bytes of data, over this endpoint's 10,000-byte limit.
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.core import RPCException

    from programs.demo_vault.plugins import DemoVaultMigrator
    from tasks.migration import stream_program_keys

    chain = start_demo_chain(
        binaries=demo_binaries,
        behaviour=ClusterBehaviour(
            slot_seconds=0.1,
            drop_fraction=0.0,
            requests_per_second=1000.0,
            program_accounts_max_bytes=10_000,
        ),
    )
    try:
        vaults = seed_vaults(chain, Pubkey.new_unique(), 300)
        filters = DemoVaultMigrator().select(vault.VaultV1.VERSION)
        async with AsyncClient(chain.url) as client:
            with pytest.raises(RPCException, match="over this endpoint's limit of 10000 bytes"):
                await client.get_program_accounts(
                    chain.program_id, encoding="base64", filters=filters
                )
            keys = await stream_program_keys(client, chain.program_id, filters)
    finally:
        chain.server.stop()
    assert len(keys) == 300
    assert all(bytes(v) in keys for v in vaults)

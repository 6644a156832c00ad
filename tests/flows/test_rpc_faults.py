"""The runbooks through the project's fault proxy: every RPC call of the flow goes through
a loopback proxy that answers 429 (Retry-After), 503, drops connections before and after
forwarding, and delays; the upgrade (on-chain backend) and a 2,000-account migration
complete in one run, and nothing lands twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flow_driver import run_upgrade_flow
from landed import (
    assert_journal_holds,
    count_landed,
    landed_signatures,
    landed_since,
    signatures_by_account,
)
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from test_migration_flow import MIGRATE, count_migrates, on_chain, params
from test_upgrade_onchain import gov_blocks, onchain_proposal, pda_buffer, programdata_hash, sign

from blocks import SolanaCluster
from flows.migration import migrate_accounts
from localnet.fault_proxy import FAULTS, FaultProxy
from programs import loader
from programs.anchor import instruction_data
from programs.demo_vault import client as vault
from programs.upgrade_manager import client as um
from programs.upgrade_manager.client import ProposalStatus
from runbooks.demo import DemoChain
from runbooks.demo_migration import seed_vaults, upgrade_directly
from store.records import migrations

__all__ = ["gov_blocks", "pda_buffer"]  # fixtures of the on-chain upgrade tests, reused

EXECUTE = instruction_data("execute_upgrade")


def count_executes(chain: DemoChain) -> Counter[str]:
    """Every execute_upgrade that lands, per proposal account."""
    return count_landed(chain.server.localnet, um.PROGRAM_ID, EXECUTE, 1)


@pytest.fixture
def proxy_at(chain: DemoChain) -> Iterator[Any]:
    proxies: list[FaultProxy] = []

    def start(rate: float, seed: int) -> FaultProxy:
        proxy = FaultProxy(
            chain.url,
            fault_rate=rate,
            seconds=180,
            seed=seed,
            delay_seconds=0.3,  # short in tests; the CLI's default is 2 s
            retry_after="1",
        ).start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


async def through(proxy: FaultProxy, cluster_block: str) -> None:
    """Point the cluster block at the proxy, with a rate limit as on a real cluster."""
    cluster = await SolanaCluster.aload(cluster_block)
    cluster.rpc_urls = [proxy.url]
    cluster.requests_per_second = 100
    await cluster.asave(cluster_block, overwrite=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("rate", "seed"), [(0.2, 12), (0.4, 40)])
async def test_the_onchain_upgrade_completes_through_rpc_faults(
    chain: DemoChain,
    gov_blocks: dict[str, str],
    records_db: Engine,
    pda_buffer: str,
    proxy_at: Any,
    rate: float,
    seed: int,
) -> None:
    v2_hash = loader.verifiable_hash(chain.binaries["v2"])
    executes = count_executes(chain)
    mark = landed_signatures(chain.server.localnet)
    proxy = proxy_at(rate, seed)
    await through(proxy, gov_blocks["cluster_block"])
    m = chain.members

    outcome = await run_upgrade_flow(
        chain,
        gov_blocks,
        pda_buffer,
        lambda proposal: [sign(m[0], proposal), sign(m[1], proposal), sign(m[2], proposal)],
        expected_sha256=v2_hash,
    )

    assert outcome.state.is_completed(), outcome.state.message
    assert programdata_hash(chain) == v2_hash
    proposal = outcome.proposal
    assert proposal is not None and proposal.status == "executed"
    assert onchain_proposal(chain, proposal).status == ProposalStatus.EXECUTED
    assert executes == {proposal.onchain_address: 1}  # exactly one execute landed
    # Every transaction the run landed (proposal, relayed sign-offs, execute) is in the
    # write-ahead journal as landed, faults or not.
    assert_journal_holds(records_db, landed_since(chain.server.localnet, mark))
    # The faults really happened: about the rate asked, of several kinds.
    faults = sum(proxy.counts[f] for f in FAULTS)
    assert faults >= rate / 2 * sum(proxy.counts.values()), proxy.counts
    assert len([f for f in FAULTS if proxy.counts[f]]) >= 3, proxy.counts
    print(f"upgrade at {rate:.0%}: {dict(proxy.counts)}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("rate", "seed"), [(0.2, 2000), (0.4, 4000)])
async def test_a_2000_account_migration_completes_through_rpc_faults(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    proxy_at: Any,
    rate: float,
    seed: int,
) -> None:
    total = 2_000
    vaults: list[Pubkey] = seed_vaults(chain, Pubkey.new_unique(), total)
    await upgrade_directly(chain, chain.binaries["v2"])
    landed = count_migrates(chain)
    proxy = proxy_at(rate, seed)
    await through(proxy, block_names["cluster_block"])

    # Batches of 168 (two pages of reads, one batch request): enough requests for the
    # proxy to inject every fault kind.
    result = await migrate_accounts(**params(chain, block_names, batch_size=200))

    assert result["accounts"] == {"pending": 0, "migrated": 0, "verified": total, "failed": 0}
    migrated = on_chain(chain, vaults)
    assert all(isinstance(v, vault.VaultV2) for v in migrated)
    assert [v.balance for v in migrated] == list(range(total))
    assert set(landed) == {str(v) for v in vaults}
    assert set(landed.values()) == {1}  # exactly one migrate per account
    run = migrations.get_migration(records_db, result["migration_id"])
    assert run is not None and run.status == "completed"
    # Every landed migrate's signature is in the records, on the account it migrated.
    signatures = signatures_by_account(chain.server.localnet, chain.program_id, MIGRATE, 0)
    states = migrations.account_states(records_db, run.id)
    assert {a: s.signature for a, s in states.items()} == {a: s[0] for a, s in signatures.items()}
    assert all(proxy.counts[f] for f in FAULTS), proxy.counts
    print(f"migration at {rate:.0%}: {dict(proxy.counts)}")

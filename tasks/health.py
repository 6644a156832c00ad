"""Tasks of the daily health check: observe the chain and read/write its records.

Observations only: every judgement is in ``domain.health``. Reads retry transport
faults; writes are idempotent (the report per flow run, the baseline hash per slot).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from prefect import task
from solders.pubkey import Pubkey

from blocks.cluster import SolanaCluster
from core.errors import ChainError
from domain.health import ProgramObservation
from programs import rpc
from programs.squads.client import Multisig
from programs.squads.client import Proposal as SquadsProposal
from programs.squads.reads import read_multisig, read_proposals
from store.records import health as health_records
from tasks.chain import READ_RETRIES, rpc_client
from tasks.records import current_run_id, records_engine


@dataclass(frozen=True)
class ClusterObservation:
    first_slot: int
    second_slot: int
    waited_seconds: float
    version: str


@task(name="observe-cluster", **READ_RETRIES)
async def observe_cluster(cluster: SolanaCluster, sample_seconds: float) -> ClusterObservation:
    """The slot twice, ``sample_seconds`` apart, and the node's version."""
    async with rpc_client(cluster) as client:
        first = (await client.get_slot()).value
        version = (await client.get_version()).value.solana_core
        started = time.monotonic()
        await asyncio.sleep(sample_seconds)
        second = (await client.get_slot()).value
    return ClusterObservation(first, second, time.monotonic() - started, version)


@task(name="observe-programs", **READ_RETRIES)
async def observe_programs(
    cluster: SolanaCluster, program_ids: list[str]
) -> dict[str, ProgramObservation]:
    """Each program's account (exists, executable) and ProgramData (authority, hash)."""
    seen: dict[str, ProgramObservation] = {}
    async with rpc_client(cluster) as client:
        for program_id in program_ids:
            key = Pubkey.from_string(program_id)
            account = await rpc.fetch_account(client, key)
            if account is None:
                seen[program_id] = ProgramObservation(program_id, exists=False, executable=False)
                continue
            try:
                info = await rpc.read_program(client, key)
            except ChainError as exc:  # not upgradeable, ProgramData gone: a finding
                seen[program_id] = ProgramObservation(
                    program_id, True, account.executable, error=str(exc)
                )
                continue
            seen[program_id] = ProgramObservation(program_id, True, account.executable, info)
    return seen


# A multisig that never cleans up could hold thousands of open indexes: read the newest.
MAX_SQUADS_PROPOSALS = 500


@dataclass(frozen=True)
class SquadsObservation:
    multisig: Multisig
    proposals: dict[int, SquadsProposal | None]


@task(name="observe-squads", **READ_RETRIES)
async def observe_squads(cluster: SolanaCluster, address: str) -> SquadsObservation:
    """The Multisig, and the Proposals that can still change (after the stale index)."""
    key = Pubkey.from_string(address)
    async with rpc_client(cluster) as client:
        multisig = await read_multisig(client, key)
        first = max(multisig.stale_transaction_index + 1, 1)
        first = max(first, multisig.transaction_index - MAX_SQUADS_PROPOSALS + 1)
        indexes = range(first, multisig.transaction_index + 1)
        proposals = await read_proposals(client, key, indexes)
    return SquadsObservation(multisig, proposals)


@task(name="read-balances", **READ_RETRIES)
async def read_balances(cluster: SolanaCluster, addresses: list[str]) -> dict[str, int]:
    async with rpc_client(cluster) as client:
        return {a: (await client.get_balance(Pubkey.from_string(a))).value for a in addresses}


@task(name="record-health-report", retries=2, retry_delay_seconds=1)
def record_report(**fields: Any) -> health_records.HealthReportRecord:
    return health_records.record_health_report(
        records_engine(), flow_run_id=current_run_id(), **fields
    )


@task(name="record-program-hash", retries=2, retry_delay_seconds=1)
def record_program_hash(cluster: str, program_id: str, digest: str, slot: int) -> None:
    health_records.set_program_hash(
        records_engine(), cluster, program_id, digest, slot, flow_run_id=current_run_id()
    )


@task(name="acknowledge-health-report", retries=2, retry_delay_seconds=1)
def acknowledge(report_id: int, by: str) -> health_records.HealthReportRecord:
    return health_records.acknowledge_health_report(
        records_engine(), report_id, by=by, flow_run_id=current_run_id()
    )

"""The policy audit of a Squads v4 multisig read from chain (``domain.squads_audit``):
read and decode the multisig, judge it, publish what was read as a markdown artifact, and
refuse (PolicyViolation) before anything is recorded or sent when a check fails."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact

from blocks.cluster import SolanaCluster
from core.errors import InputError, PolicyViolation
from core.keys import parse_pubkey
from domain.policy import Policy
from domain.squads_audit import SquadsAudit, squads_audit
from programs.squads.client import Multisig
from programs.squads.reads import read_multisig
from tasks.chain import READ_RETRIES, rpc_client

ARTIFACT_KEY = "squads-multisig-audit"


@task(name="read-squads-multisig", **READ_RETRIES)
async def read_squads_multisig(cluster: SolanaCluster, address: str) -> Multisig:
    """The Squads multisig at ``address`` (owned by the Squads program, else ChainError)."""
    key = parse_pubkey(address, "squads_multisig")
    async with rpc_client(cluster) as client:
        return await read_multisig(client, key)


@task(name="audit-squads-multisig", **READ_RETRIES)
async def audit_squads_multisig(
    cluster: SolanaCluster,
    policy: Policy,
    address: str | None,
    runbook_member: str | None = None,
) -> SquadsAudit:
    """Read the multisig the policy names and audit it; PolicyViolation on a refusal.

    ``runbook_member`` is the key the runbook proposes and executes with."""
    if not address:
        raise InputError(
            f"the Multisig Policy block {policy.name!r} has backend squads but names no "
            "multisig; set its squads_multisig to the Squads multisig account's address"
        )
    key = parse_pubkey(address, "squads_multisig")
    member = parse_pubkey(runbook_member, "runbook member key") if runbook_member else None
    async with rpc_client(cluster) as client:
        multisig = await read_multisig(client, key)
    result = squads_audit(policy, key, multisig, member)
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=result.report,
        description=f"Squads multisig {address} as read from {cluster.cluster}",
    )
    logger = get_run_logger()
    for warning in result.warnings:
        logger.warning("Squads multisig %s: %s", address, warning)
    if result.refusals:
        raise PolicyViolation(list(result.refusals))
    logger.info(
        "Squads multisig %s: %d of %d, time lock %d s",
        address,
        multisig.threshold,
        len(multisig.members),
        multisig.time_lock,
    )
    return result

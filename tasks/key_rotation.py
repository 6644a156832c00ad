"""Tasks of the key-rotation runbook: the authority change on chain, and its records.

The write reads the chain first, so a retried task never sends the change twice.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from solders.pubkey import Pubkey

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from core.errors import AuthorityMismatch, ChainError, HashMismatch, InputError
from programs import loader, rpc
from programs.rpc import ProgramInfo
from store.records import key_rotation
from tasks.chain import READ_RETRIES, WRITE_RETRIES, rpc_client, run_purpose, send_write
from tasks.records import current_run_id, records_engine


@task(name="send-authority-change", **WRITE_RETRIES)
async def send_authority_change(
    cluster: SolanaCluster,
    program_id: str,
    new_authority: str | None,
    authority_block: str,
    new_authority_block: str | None,
    fee_payer_block: str,
) -> str | None:
    """Move the upgrade authority to ``new_authority`` with SetAuthorityChecked (the new
    authority signs too), or remove it (``None``: immutable, SetAuthority without a new
    authority). Returns the signature; None when the chain already has the change.
    """
    logger = get_run_logger()
    authority = (await load_block(SolanaKeypair, authority_block)).keypair()
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    signers = [authority]
    if new_authority is not None:
        if new_authority_block is None:
            raise InputError("SetAuthorityChecked needs the new authority's signature")
        new_key = (await load_block(SolanaKeypair, new_authority_block)).keypair()
        if str(new_key.pubkey()) != new_authority:
            raise InputError(f"the new authority block does not hold {new_authority}")
        signers.append(new_key)
    program = Pubkey.from_string(program_id)
    async with rpc_client(cluster) as client:
        info = await rpc.read_program(client, program)
        if info.authority == new_authority:
            logger.info(
                "%s already has upgrade authority %s: nothing sent", program_id, new_authority
            )
            return None
        if info.authority != str(authority.pubkey()):
            raise AuthorityMismatch(
                f"{program_id}'s upgrade authority is {info.authority}, neither the current "
                f"key {authority.pubkey()} nor the new {new_authority}: someone else changed "
                "it; stop and investigate"
            )
        programdata = loader.programdata_address(program)
        if new_authority is None:
            ix = loader.set_authority(programdata, authority.pubkey(), None)
        else:
            ix = loader.set_authority_checked(
                programdata, authority.pubkey(), Pubkey.from_string(new_authority)
            )
        purpose = run_purpose(f"set-authority:{program_id}:{new_authority or 'none'}")
        signature = await send_write(client, cluster, purpose, [ix], payer, signers)
    logger.info("upgrade authority of %s -> %s: %s", program_id, new_authority, signature)
    return str(signature)


@task(name="verify-authority", **READ_RETRIES)
async def verify_authority(
    cluster: SolanaCluster, program_id: str, expected: str | None, expected_hash: str | None
) -> ProgramInfo:
    """The chain shows the new authority, and the code did not change on the way."""
    async with rpc_client(cluster) as client:
        info = await rpc.read_program(client, Pubkey.from_string(program_id))
    if info.authority != expected:
        raise ChainError(
            f"{program_id}'s upgrade authority is {info.authority} after the change, not "
            f"{expected}; check the transaction in an explorer"
        )
    if expected_hash is not None and info.sha256 != expected_hash:
        raise HashMismatch(
            f"program {program_id} during the authority change", expected_hash, info.sha256
        )
    return info


@task(name="record-rotation", retries=2, retry_delay_seconds=1)
def record_rotation(**fields: Any) -> key_rotation.RotationRecord:
    return key_rotation.record_rotation(records_engine(), flow_run_id=current_run_id(), **fields)


@task(name="register-key", retries=2, retry_delay_seconds=1)
def register_key(**fields: Any) -> key_rotation.KeyRecord:
    return key_rotation.register_key(records_engine(), flow_run_id=current_run_id(), **fields)


@task(name="retire-key", retries=2, retry_delay_seconds=1)
def retire_key(**fields: Any) -> key_rotation.KeyRecord:
    return key_rotation.retire_key(records_engine(), flow_run_id=current_run_id(), **fields)

"""Tasks of the kill switch: check, engage and release the recorded switch, and set the
program's own pause flag. Every runbook that writes to a program calls ``check_kill_switch``
(or ``ensure_released`` inside its own tasks) before it writes."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks import load_block
from blocks.cluster import SolanaCluster
from blocks.keypair import SolanaKeypair
from blocks.program_pause import ProgramPause
from core.errors import AccountNotFound
from domain import kill_switch
from programs import rpc
from store.records import kill_switch as kill_switch_records
from store.records.kill_switch import KillSwitchRecord
from tasks.chain import READ_RETRIES, WRITE_RETRIES, rpc_client, run_purpose, send_write
from tasks.records import current_run_id, records_engine


def engaged(cluster: str, program_id: str) -> list[KillSwitchRecord]:
    """The engaged switches that stop writes to ``program_id`` (its own, the cluster's)."""
    return kill_switch_records.engaged_kill_switches(records_engine(), cluster, program_id)


def ensure_released(cluster: str, program_id: str, action: str) -> None:
    """Raise ``KillSwitchEngaged`` when a switch stops writes to ``program_id``."""
    switches = engaged(cluster, program_id)
    if switches:
        raise kill_switch.refusal(switches, action)


@task(name="check-kill-switch", cache_policy=NO_CACHE, **READ_RETRIES)
def check_kill_switch(cluster: str, program_id: str, action: str) -> None:
    """The recorded kill switch allows ``action`` on ``program_id`` (else KillSwitchEngaged)."""
    ensure_released(cluster, program_id, action)


@task(name="engage-kill-switch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def engage_kill_switch(cluster: str, program_id: str, reason: str, actor: str) -> KillSwitchRecord:
    record = kill_switch_records.engage_kill_switch(
        records_engine(),
        cluster,
        program_id,
        reason=reason,
        actor=actor,
        flow_run_id=current_run_id(),
    )
    get_run_logger().warning("kill switch engaged for %s: %s", record.scope, record.reason)
    return record


@task(name="release-kill-switch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def release_kill_switch(
    cluster: str, program_id: str, proposal_id: int, actor: str
) -> KillSwitchRecord:
    record = kill_switch_records.release_kill_switch(
        records_engine(),
        cluster,
        program_id,
        proposal_id=proposal_id,
        actor=actor,
        flow_run_id=current_run_id(),
    )
    get_run_logger().info("kill switch released for %s (proposal #%d)", record.scope, proposal_id)
    return record


@task(name="set-program-paused", cache_policy=NO_CACHE, **WRITE_RETRIES)
async def set_program_paused(
    cluster: SolanaCluster, pause_block: str, paused: bool, fee_payer_block: str
) -> str | None:
    """Pause or unpause the program with its own instruction; None when it already was.

    Idempotent: the pause account is read first.
    """
    block = await load_block(ProgramPause, pause_block)
    pauser = block.pauser()
    admin = block.admin()
    payer = (await load_block(SolanaKeypair, fee_payer_block)).keypair()
    async with rpc_client(cluster) as client:
        account = await rpc.fetch_account(client, pauser.account)
        if account is None:
            raise AccountNotFound(
                f"pause account {pauser.account} of {block.program_id} does not exist; "
                f"check the program-pause block {pause_block!r}"
            )
        if pauser.is_paused(bytes(account.data)) == paused:
            return None
        ix = pauser.pause(admin.pubkey()) if paused else pauser.unpause(admin.pubkey())
        what = "pause" if paused else "unpause"
        purpose = run_purpose(f"{what}:{block.program_id}")
        signature = await send_write(client, cluster, purpose, [ix], payer, [admin])
    get_run_logger().info(
        "program %s %s: %s", block.program_id, "paused" if paused else "unpaused", signature
    )
    return str(signature)

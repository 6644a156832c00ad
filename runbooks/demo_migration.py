"""The migration and rollback demos, on the same embedded localnet as the upgrade demo.

``runbooks demo --scenario migration``: deploy demo_vault v1 with a config and 1,000
vaults (real transactions), hand its upgrade authority to an upgrade_manager governance
(3 of 5, emergency 4 of 5), upgrade to v2 through the upgrade runbook with the ``onchain``
backend (sign-offs relayed to the program, timelock, archive of v1), migrate every vault
through the migration runbook, verify.

``runbooks demo --scenario rollback``: the same, then the emergency rollback: kill switch
on (recorded and the program's pause), the rollback refused over the migrated vaults,
then forced with a recorded reason; the archived v1 written to a buffer handed to the
governance, proposed on chain as an emergency upgrade, signed off under the governance's
emergency threshold and timelock, executed by upgrade_manager (no upgrade key), its hash
checked against the archive, and the kill switch released after a second sign-off.

The helpers build the same scenario for tests and benches.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core import approval
from programs import send
from programs.demo_vault import client as vault
from programs.loader import verifiable_hash
from runbooks.demo import (
    DemoChain,
    demo_client,
    find_run,
    save_blocks,
    start_demo_chain,
    write_buffer,
)

if TYPE_CHECKING:
    from domain.signoff import Signable
    from localnet.cluster_mode import ClusterBehaviour
    from store.records.proposals import ProposalRecord

DEMO_VAULTS = 1_000
DEMO_TIMELOCK_SECONDS = 1
# Vaults created per transaction: each signs (64 B) and adds two instructions.
_VAULTS_PER_TRANSACTION = 4


async def create_config(chain: DemoChain) -> Pubkey:
    """demo_vault's Config (its pause flag), admin = the demo's authority."""
    config = Keypair()
    async with demo_client(chain.url) as client:
        rent = (await client.get_minimum_balance_for_rent_exemption(vault.Config.SIZE)).value
        ixs = vault.create_config_instructions(
            chain.authority.pubkey(),
            config.pubkey(),
            chain.authority.pubkey(),
            chain.program_id,
            rent,
        )
        await send.send_and_confirm(client, ixs, chain.authority, [config])
    return config.pubkey()


async def create_vaults(
    chain: DemoChain, config: Pubkey, count: int, *, concurrency: int = 16
) -> list[Pubkey]:
    """``count`` v1 vaults made by real transactions (balance = their index)."""
    payer = chain.authority
    vaults = [Keypair() for _ in range(count)]
    limit = asyncio.Semaphore(concurrency)
    async with demo_client(chain.url) as client:
        rent = (await client.get_minimum_balance_for_rent_exemption(vault.VaultV1.SIZE)).value

        async def create(start: int) -> None:
            group = vaults[start : start + _VAULTS_PER_TRANSACTION]
            ixs = []
            for i, kp in enumerate(group, start):
                ixs += vault.create_vault_instructions(
                    payer.pubkey(),
                    kp.pubkey(),
                    Keypair().pubkey(),
                    i,
                    chain.program_id,
                    rent,
                    config=config,
                )
            async with limit:
                await send.send_and_confirm(client, ixs, payer, group)

        await asyncio.gather(*(create(i) for i in range(0, count, _VAULTS_PER_TRANSACTION)))
    return [kp.pubkey() for kp in vaults]


def seed_vaults(
    chain: DemoChain, config: Pubkey, count: int, *, first_balance: int = 0, spread: bool = False
) -> list[Pubkey]:
    """``count`` v1 vaults written straight into the SVM (setup for tests and benches).
    ``spread``: random addresses, as real ones are (``Pubkey.new_unique``'s counter
    leaves the first 8 bytes' low bits alike: every vault would fall in one shard)."""
    net = chain.server.localnet
    rent = net.minimum_balance_for_rent_exemption(vault.VaultV1.SIZE)
    keys = [Pubkey(os.urandom(32)) if spread else Pubkey.new_unique() for _ in range(count)]
    with net.lock:
        for i, key in enumerate(keys):
            data = vault.VaultV1(
                owner=Pubkey.new_unique(), config=config, balance=first_balance + i
            ).encode()
            net.svm.set_account(key, Account(rent, data, chain.program_id, False, 0))
    return keys


async def upgrade_directly(chain: DemoChain, elf: bytes) -> None:
    """Upgrade the demo program without the runbook (setup for tests and benches)."""
    from programs import loader

    buffer = await write_buffer(chain, elf)
    async with demo_client(chain.url) as client:
        ix = loader.upgrade(
            chain.program_id, buffer, chain.authority.pubkey(), chain.authority.pubkey()
        )
        await send.send_and_confirm(client, [ix], chain.authority)


async def save_pause_block(chain: DemoChain, config: Pubkey, name: str) -> str:
    """The program-pause block of the demo program (admin = the demo's authority)."""
    from blocks.program_pause import ProgramPause

    await ProgramPause.for_program(chain.program_id, config, chain.authority).asave(
        name, overwrite=True
    )
    return name


async def set_emergency_policy(policy_block: str, *, threshold: int, timelock_seconds: int) -> None:
    """Give the saved multisig policy its emergency threshold and timelock."""
    from blocks import MultisigPolicy

    policy = await MultisigPolicy.aload(policy_block)
    policy.emergency_threshold = threshold
    policy.emergency_timelock_seconds = timelock_seconds
    await policy.asave(policy_block, overwrite=True)


async def run_signed_flow(
    start: Callable[[], Coroutine[Any, Any, Any]],
    signers: Sequence[Sequence[Keypair]],
    message_for: Callable[[uuid.UUID, int], str | Awaitable[str]],
) -> Any:
    """Run a flow that pauses for sign-offs; at its n-th sign-off round, ``signers[n]``
    sign ``message_for(run_id, n)`` (a line, or an awaitable of one) and submit the Resume
    form, as members would."""
    from prefect import tags
    from prefect.client.orchestration import get_client

    from runbooks.console import sign_off, wait_for_pause

    tag = f"demo-{uuid.uuid4().hex[:12]}"
    with tags(tag):
        flow_task = asyncio.ensure_future(start())
    run_id = await find_run(tag)

    async def sign() -> None:
        key = None
        async with get_client() as client:
            for round_, members in enumerate(signers):
                await wait_for_pause(client, run_id, not_key=key, timeout_seconds=120)
                message = message_for(run_id, round_)
                if inspect.isawaitable(message):
                    message = await message
                for member in members:
                    key = await sign_off(
                        client,
                        run_id,
                        {
                            "member": str(member.pubkey()),
                            "signature": str(approval.sign(member, message)),
                        },
                        after_key=key,
                    )

    signing = asyncio.ensure_future(sign())
    done, _ = await asyncio.wait({flow_task, signing}, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        task.result()
    await signing
    return await flow_task


def current_proposal_message(run_id: uuid.UUID, kind: str) -> str:
    """The approve message of the newest proposal of ``kind`` this run recorded."""
    return signing_subject_of(_newest_proposal(run_id, kind)).message("approve")


async def current_onchain_message(run_id: uuid.UUID, kind: str, rpc_url: str) -> str:
    """As ``current_proposal_message``, but an on-chain proposal's line is read from its
    account, as `runbooks sign --onchain-proposal` reads it (its kind names itself)."""
    from domain.governance import onchain_approval_line

    proposal = _newest_proposal(run_id, kind)
    if proposal.backend != "onchain" or not proposal.onchain_address:
        return signing_subject_of(proposal).message("approve")
    async with demo_client(rpc_url) as client:
        address = Pubkey.from_string(proposal.onchain_address)
        line, _, _ = await onchain_approval_line(client, address)
    return line


def signing_subject_of(proposal: ProposalRecord) -> Signable:
    from flows._signoff import signing_subject

    return signing_subject(proposal)


def _newest_proposal(run_id: uuid.UUID, kind: str) -> ProposalRecord:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Proposal
    from store.records.proposals import get_proposal
    from tasks.records import records_engine

    engine = records_engine()
    with session_scope(engine) as session:
        proposal_id = session.scalar(
            select(Proposal.id)
            .where(Proposal.flow_run_id == str(run_id), Proposal.kind == kind)
            .order_by(Proposal.id.desc())
        )
    proposal = get_proposal(engine, proposal_id) if proposal_id else None
    if proposal is None:
        raise RuntimeError(f"flow run {run_id} paused without a {kind} proposal")
    return proposal


async def demo_migration(
    vaults: int = DEMO_VAULTS,
    *,
    rollback: bool = False,
    behaviour: ClusterBehaviour | None = None,
) -> dict[str, Any]:
    """Upgrade, migrate ``vaults`` accounts and verify; with ``rollback``, roll back too."""
    from flows.migration import migrate_accounts
    from runbooks.demo import hand_buffer_to_governance, run_upgrade, setup_governance

    started = time.monotonic()
    chain = start_demo_chain(behaviour=behaviour)
    result: dict[str, Any] = {}
    try:
        config = await create_config(chain)
        created = time.monotonic()
        await create_vaults(chain, config, vaults)
        result["vaults_created"] = vaults
        result["vault_setup_seconds"] = round(time.monotonic() - created, 2)
        # 1 s timelocks: the demo's waits are the sign-offs, not the clock.
        await setup_governance(chain, timelock_seconds=DEMO_TIMELOCK_SECONDS)
        names = await save_blocks(chain, timelock_seconds=DEMO_TIMELOCK_SECONDS, backend="onchain")
        result["backend"] = "onchain"
        buffer = await write_buffer(chain, chain.binaries["v2"])
        await hand_buffer_to_governance(chain, buffer)
        v1_hash, v2_hash = (verifiable_hash(chain.binaries[v]) for v in ("v1", "v2"))
        upgrade = await run_upgrade(
            chain, buffer, chain.members[:3], names, expected_sha256=v2_hash
        )
        result["upgrade"] = {k: upgrade[k] for k in ("proposal_id", "old_hash", "new_hash")}
        migration = await migrate_accounts(
            program_id=str(chain.program_id),
            expected_program_sha256=v2_hash,
            cluster_block=names["cluster_block"],
            fee_payer_block=names["fee_payer_block"],
        )
        result["migration"] = migration
        if rollback:
            rolled = await demo_rollback(chain, names, config, v1_hash)
            result["rollback"] = rolled
            result["archived_hash"] = rolled["archived_hash"]
            result["restored_hash"] = rolled["restored_hash"]
    finally:
        chain.server.stop()
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


async def demo_rollback(
    chain: DemoChain, names: dict[str, str], config: Pubkey, v1_hash: str
) -> dict[str, Any]:
    """Roll the migrated program back to the archived v1: refused, then forced; signed
    off under the governance's emergency threshold by as many members."""
    from core.errors import RollbackRefused
    from flows.rollback import emergency_rollback

    pause_block = await save_pause_block(chain, config, f"{names['cluster_block']}-pause")
    params: dict[str, Any] = {
        "program_id": str(chain.program_id),
        "reason": "demo: v2 misbehaves after the migration",
        "proposer": "on-call",
        "program_pause_block": pause_block,
        **names,
    }
    refused: str | None = None
    try:
        await emergency_rollback(**params)
    except RollbackRefused as exc:
        refused = f"{len(exc.accounts)} migrated accounts named"
    emergency = chain.members[: await emergency_threshold(chain)]

    async def message(run_id: uuid.UUID, round_: int) -> str:
        if round_ == 0:  # upgrade_manager's emergency-upgrade line, read from the chain
            return await current_onchain_message(run_id, "rollback", chain.url)
        return current_proposal_message(run_id, "kill-switch-release")

    result = await run_signed_flow(
        lambda: emergency_rollback(
            **params,
            force=True,
            force_reason="demo: v1 refuses v2 vaults (error 6002) until v2 is redeployed",
        ),
        [emergency, emergency],
        message,
    )
    result["refused_first"] = refused
    result["restored_archived_hash"] = result["restored_hash"] == result["archived_hash"] == v1_hash
    return result


async def emergency_threshold(chain: DemoChain) -> int:
    """The emergency threshold the demo's governance enforces."""
    from domain.governance import read_governance

    assert chain.governance is not None
    async with demo_client(chain.url) as client:
        return (await read_governance(client, chain.governance)).emergency_threshold


def main(scenario: str = "migration", behaviour: ClusterBehaviour | None = None) -> int:
    import json

    result = asyncio.run(demo_migration(rollback=scenario == "rollback", behaviour=behaviour))
    print("RESULT " + json.dumps(result, sort_keys=True, default=str))
    return 0

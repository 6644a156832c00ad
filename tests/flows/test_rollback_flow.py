"""The emergency rollback and kill-switch runbooks on a real Prefect API, a real localnet
and real records: the exact archived hash restored, the refusal over migrated accounts,
and the kill switch stopping each runbook until a signed-off release."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from cluster_like import CLUSTER_LIKE
from landed import (
    LOADER_UPGRADE,
    assert_journal_holds,
    assert_landed_as_the_mode_lands,
    instructions_in,
    landed_signatures,
    landed_since,
)
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Engine, func, select
from vault_users import add_vault, deposit

from blocks import SolanaCluster
from core.errors import InputError, KillSwitchEngaged, RollbackRefused
from flows._signoff import signing_subject
from flows.kill_switch import kill_switch
from flows.migration import migrate_accounts
from flows.rollback import emergency_rollback
from programs import loader
from programs.demo_vault import client as vault
from runbooks.demo import DemoChain, run_upgrade
from runbooks.demo_migration import (
    create_config,
    current_proposal_message,
    run_signed_flow,
    save_pause_block,
    seed_vaults,
    set_emergency_policy,
    upgrade_directly,
)
from store.db import session_scope
from store.models import Execution, Proposal
from store.records import archives, audit, proposals
from store.records import kill_switch as kill_switch_records
from tasks.archive import archive_program


def programdata_hash(chain: DemoChain) -> str:
    account = chain.server.localnet.get_account(loader.programdata_address(chain.program_id))
    assert account is not None
    return loader.programdata_hash(bytes(account.data))


def config_paused(chain: DemoChain, config: Pubkey) -> bool:
    account = chain.server.localnet.get_account(config)
    assert account is not None
    return vault.Config.decode(bytes(account.data)).paused


def messages_of(*kinds: str) -> Any:
    """Sign-off round n signs the newest proposal of ``kinds[n]`` the run recorded."""

    def message(run_id: uuid.UUID, round_: int) -> str:
        return current_proposal_message(run_id, kinds[round_])

    return message


@pytest.fixture
async def pausable(chain: DemoChain, block_names: dict[str, str]) -> tuple[Pubkey, str]:
    """demo_vault's config (its pause flag), its program-pause block, and an emergency
    policy of 3 members (not below the normal threshold) and 1 s."""
    config = await create_config(chain)
    block = await save_pause_block(chain, config, f"{block_names['cluster_block']}-pause")
    await set_emergency_policy(block_names["policy_block"], threshold=3, timelock_seconds=1)
    return config, block


def rollback_params(chain: DemoChain, names: dict[str, str], pause: str) -> dict[str, Any]:
    return {
        "program_id": str(chain.program_id),
        "reason": "v2 drains vaults",
        "proposer": "on-call",
        "program_pause_block": pause,
        **names,
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("behaviour", [None, CLUSTER_LIKE], ids=["instant", "cluster"])
async def test_rollback_restores_the_exact_archived_binary(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    v2_buffer: str,
    pausable: tuple[Pubkey, str],
) -> None:
    config, pause = pausable
    mark = landed_signatures(chain.server.localnet)
    v1_hash, v2_hash = (loader.verifiable_hash(chain.binaries[v]) for v in ("v1", "v2"))
    program_id = str(chain.program_id)
    upgraded = await run_upgrade(chain, v2_buffer, chain.members[:3], block_names)
    assert programdata_hash(chain) == v2_hash
    # The upgrade runbook archived the binary it replaced, byte for byte.
    archived = archives.get_archive(records_db, "localnet", program_id, v1_hash)
    assert archived is not None and archived.data == chain.binaries["v1"]
    assert archived.proposal_id == upgraded["proposal_id"]

    emergency = chain.members[2:5]  # the emergency threshold: 3, as the normal one
    result = await run_signed_flow(
        lambda: emergency_rollback(**rollback_params(chain, block_names, pause)),
        [emergency, emergency],
        messages_of("rollback", "kill-switch-release"),
    )

    assert result["new_hash"] == v1_hash == programdata_hash(chain)
    assert result["old_hash"] == v2_hash and result["archive_id"] == archived.id
    # One Upgrade from v2's buffer, one from the buffer the rollback wrote: nothing twice;
    # every transaction of both runs is journalled as landed.
    landed = landed_since(chain.server.localnet, mark)
    upgrades = instructions_in(landed, loader.LOADER_ID, LOADER_UPGRADE, 2)
    assert upgrades[v2_buffer] == 1 and sorted(upgrades.values()) == [1, 1]
    assert_journal_holds(records_db, landed)
    assert_landed_as_the_mode_lands(chain.server.localnet, landed)
    proposal = proposals.get_proposal(records_db, result["proposal_id"])
    assert proposal is not None
    assert (proposal.kind, proposal.status, proposal.buffer_hash) == (
        "rollback",
        "executed",
        v1_hash,
    )
    assert (proposal.threshold, proposal.timelock_seconds) == (3, 1)  # the emergency policy
    assert sorted(result["approvals"]) == sorted(str(m.pubkey()) for m in emergency)
    execution = proposals.get_execution(records_db, proposal.id)
    assert execution is not None and execution.new_hash == v1_hash
    # The binary it replaced was archived too, before it executed.
    assert archives.get_archive(records_db, "localnet", program_id, v2_hash) is not None
    # Kill switch: engaged for the rollback, released after its own sign-off.
    switch = kill_switch_records.get_kill_switch(records_db, "localnet", program_id)
    assert switch is not None and not switch.engaged
    assert switch.release_proposal_id == result["release_proposal_id"]
    release = proposals.get_proposal(records_db, switch.release_proposal_id)  # type: ignore[arg-type]
    assert release is not None and release.status == "executed"
    assert "kill-switch: release" in signing_subject(release).message("approve")
    assert not config_paused(chain, config)
    actions = [
        e.action
        for e in audit.audit_events(
            records_db, kill_switch_records.kill_switch_subject("localnet", program_id)
        )
    ]
    assert actions == ["kill_switch.engaged", "kill_switch.released"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rollback_over_migrated_accounts_is_refused_naming_them_unless_forced(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    pausable: tuple[Pubkey, str],
) -> None:
    config, pause = pausable
    program_id = str(chain.program_id)
    v1_hash = loader.verifiable_hash(chain.binaries["v1"])
    cluster = await SolanaCluster.aload(block_names["cluster_block"])
    await archive_program(cluster, program_id)  # as the upgrade runbook does before executing
    await upgrade_directly(chain, chain.binaries["v2"])
    vaults = seed_vaults(chain, config, 30)
    migrated = await migrate_accounts(
        program_id=program_id,
        cluster_block=block_names["cluster_block"],
        fee_payer_block=block_names["fee_payer_block"],
    )
    assert migrated["accounts"]["verified"] == 30

    params = rollback_params(chain, block_names, pause)
    with pytest.raises(RollbackRefused) as refused:
        await emergency_rollback(**params)
    assert sorted(refused.value.accounts) == sorted(str(v) for v in vaults)
    assert str(vaults[0]) in str(refused.value) and "force_reason" in str(refused.value)
    # Nothing was proposed or sent; the kill switch stays on (the emergency is not over).
    assert programdata_hash(chain) != v1_hash
    with session_scope(records_db) as session:
        assert session.scalar(select(func.count()).where(Proposal.kind == "rollback")) == 0
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id)
    assert config_paused(chain, config)
    with pytest.raises(InputError, match="force needs a force_reason"):
        await emergency_rollback(**params, force=True)

    reason = "v1.0.1 hotfix reads layout v2; vaults checked by hand"
    members = chain.members[:3]
    result = await run_signed_flow(
        lambda: emergency_rollback(**params, force=True, force_reason=reason),
        [members, members],
        messages_of("rollback", "kill-switch-release"),
    )
    assert result["new_hash"] == v1_hash == programdata_hash(chain)
    assert result["forced_over_accounts"] == 30
    forced = audit.audit_events(records_db, action="rollback.forced")
    assert [(e.details["reason"], e.details["accounts"]) for e in forced] == [(reason, 30)]
    proposal = proposals.get_proposal(records_db, result["proposal_id"])
    assert proposal is not None and reason in proposal.description
    # What the refusal warned about: v1 refuses a vault on layout v2.
    outcome = deposit(chain, vaults[0], Keypair(), config)
    assert "Custom(6002)" in str(outcome.err)  # VaultError.UnsupportedLayout


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_kill_switch_stops_each_runbook_until_a_signed_off_release(
    chain: DemoChain,
    block_names: dict[str, str],
    records_db: Engine,
    v2_buffer: str,
    pausable: tuple[Pubkey, str],
) -> None:
    config, pause = pausable
    program_id = str(chain.program_id)
    v1_hash = loader.verifiable_hash(chain.binaries["v1"])
    owner, vault_key = add_vault(chain, config)
    assert deposit(chain, vault_key, owner, config).err is None
    switch_params = {
        "program_id": program_id,
        "actor": "on-call",
        "program_pause_block": pause,
        "cluster_block": block_names["cluster_block"],
        "policy_block": block_names["policy_block"],
        "fee_payer_block": block_names["fee_payer_block"],
    }

    engaged = await kill_switch(action="engage", reason="exploit suspected", **switch_params)
    assert engaged["engaged"] is True
    # The program's own pause: users' deposits stop too.
    assert config_paused(chain, config)
    assert "Custom(6000)" in str(deposit(chain, vault_key, owner, config).err)  # Paused

    with pytest.raises(KillSwitchEngaged, match="account migration refused"):
        await migrate_accounts(
            program_id=program_id,
            cluster_block=block_names["cluster_block"],
            fee_payer_block=block_names["fee_payer_block"],
        )
    # The upgrade collects its sign-offs, then refuses to execute.
    with pytest.raises(KillSwitchEngaged, match="kill switch engaged: upgrade refused"):
        await run_upgrade(chain, v2_buffer, chain.members[:3], block_names)
    assert programdata_hash(chain) == v1_hash
    with session_scope(records_db) as session:
        assert session.scalar(select(func.count()).select_from(Execution)) == 0

    released = await run_signed_flow(
        lambda: kill_switch(action="release", reason="patched and reviewed", **switch_params),
        [chain.members[:3]],
        messages_of("kill-switch-release"),
    )
    assert released["engaged"] is False and released["release_proposal_id"]
    assert not config_paused(chain, config)
    assert deposit(chain, vault_key, owner, config).err is None
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id) == []

"""The kill switch on a Squads v4 policy, on a localnet with demo_vault, its own pause, and a
multisig serialized by the official SDK (three voters, threshold 2, and the runbook's key
with Initiate and Execute).

Engage and release send no Squads instruction (the release reads the Multisig account
only), so they run here without the Squads program: engage pauses the program; the
release is signed by the multisig's voters under its threshold, while a member the policy
block lists but the multisig does not (and the runbook's own key) is refused and recorded;
the program serves again. A policy naming no multisig, or an address that is not one, is
refused before anything is recorded or sent.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from solders.pubkey import Pubkey
from sqlalchemy import Engine
from vault_users import add_vault, deposit

from blocks import MultisigPolicy
from core import errors
from flows.kill_switch import kill_switch
from runbooks.demo import DemoChain
from runbooks.demo_migration import (
    create_config,
    current_proposal_message,
    run_signed_flow,
    save_pause_block,
)
from store.records import kill_switch as kill_switch_records
from store.records import proposals
from store.records.kill_switch import RELEASE_KIND
from tests.flows.test_upgrade_squads import row_counts, squads_policy


def switch_params(chain: DemoChain, names: dict[str, str], **more: Any) -> dict[str, Any]:
    return {
        "program_id": str(chain.program_id),
        "actor": "on-call",
        **{k: v for k, v in names.items() if k != "authority_block"},
        **more,
    }


async def paused_program(chain: DemoChain, names: dict[str, str]) -> tuple[str, Any]:
    """demo_vault's pause block and a user's vault: (block name, deposit attempt)."""
    config = await create_config(chain)
    pause = await save_pause_block(chain, config, f"{names['cluster_block']}-pause")
    owner, vault_key = add_vault(chain, config)
    return pause, lambda: deposit(chain, vault_key, owner, config)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_engage_pauses_and_the_multisig_voters_release(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    placed = await squads_policy(chain, block_names)
    pause, try_deposit = await paused_program(chain, block_names)
    assert try_deposit().err is None
    params = switch_params(chain, block_names, program_pause_block=pause)

    engaged = await kill_switch(action="engage", reason="exploit suspected", **params)
    assert engaged["engaged"] is True
    assert "Custom(6000)" in str(try_deposit().err)  # demo_vault's own pause: users stop

    voters = chain.members[:3]
    listed_not_voting = chain.members[3]  # in the policy block, not in the multisig
    lines: list[str] = []

    def line(run_id: uuid.UUID, _: int) -> str:
        lines.append(current_proposal_message(run_id, RELEASE_KIND))
        return lines[-1]

    released = await run_signed_flow(
        lambda: kill_switch(action="release", reason="patched and reviewed", **params),
        [[listed_not_voting, chain.authority, voters[0], voters[2]]],
        line,
    )
    assert released["engaged"] is False
    assert try_deposit().err is None  # serves again
    program_id = params["program_id"]
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id) == []

    proposal = proposals.get_proposal(records_db, released["release_proposal_id"])
    assert proposal is not None and proposal.kind == RELEASE_KIND
    assert (proposal.backend, proposal.governance) == ("squads", str(placed.address))
    assert sorted(proposal.members) == sorted(str(v.pubkey()) for v in voters)
    assert (proposal.threshold, proposal.timelock_seconds, proposal.status) == (2, 0, "executed")
    assert "kill-switch: release" in lines[0]
    attempts = proposals.approvals(records_db, proposal.id)
    refused = [a for a in attempts if not a.accepted]
    assert [a.member for a in refused] == [
        str(listed_not_voting.pubkey()),
        str(chain.authority.pubkey()),
    ]
    assert all(f"not a member of multisig '{placed.address}'" in (a.reason or "") for a in refused)
    assert all("only its 3 members can sign off" in (a.reason or "") for a in refused)
    assert sorted(a.member for a in attempts if a.accepted) == sorted(
        str(v.pubkey()) for v in (voters[0], voters[2])
    )


async def set_multisig(names: dict[str, str], address: str) -> None:
    policy = await MultisigPolicy.aload(names["policy_block"])
    policy.squads_multisig = address
    await policy.asave(names["policy_block"], overwrite=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_release_under_a_bad_squads_policy_is_refused_before_anything(
    chain: DemoChain, block_names: dict[str, str], records_db: Engine
) -> None:
    await squads_policy(chain, block_names)
    pause, try_deposit = await paused_program(chain, block_names)
    params = switch_params(chain, block_names, program_pause_block=pause)
    await kill_switch(action="engage", reason="exploit suspected", **params)
    before = row_counts(records_db)
    slot = chain.server.localnet.slot
    program_id = params["program_id"]

    cases: list[tuple[str, type[errors.RunbookError], str]] = [
        ("", errors.InputError, "has backend squads but names no multisig; set its squads"),
        # The program's own account: owned by the loader, not a Squads multisig.
        (program_id, errors.ChainError, "not the Squads program"),
        (str(Pubkey.new_unique()), errors.AccountNotFound, "not a Squads multisig here"),
    ]
    for address, error, says in cases:
        await set_multisig(block_names, address)
        with pytest.raises(error, match=says):
            await kill_switch(action="release", reason="patched and reviewed", **params)
    assert row_counts(records_db) == before and chain.server.localnet.slot == slot
    assert kill_switch_records.engaged_kill_switches(records_db, "localnet", program_id)
    assert "Custom(6000)" in str(try_deposit().err)  # still paused

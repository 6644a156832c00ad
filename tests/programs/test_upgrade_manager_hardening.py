"""upgrade_manager's answers to an outside review: each test performs the old attack on a
real LiteSVM and shows it refused with its own error and nothing changed.

- spill: whoever executed chose where the buffer's lamports (its rent) went;
- who proposes: anyone could create proposals and take the operator's next number;
- emergency policy: an emergency threshold below the normal one was accepted;
- member keys: the identity point (and other small-order points) was accepted;
- adopt: handing a program to a mistyped governance address stranded it.
"""

from __future__ import annotations

import struct

import pytest
from solders.account import Account
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.ed25519 import small_order_points
from programs import loader
from programs.anchor import AnchorError, instruction_discriminator
from programs.upgrade_manager import client
from programs.upgrade_manager.client import GovernanceConfig, ProposalStatus
from programs.upgrade_manager.client import UpgradeManagerError as E
from programs.upgrade_manager.sandbox import (
    MAINNET_GENESIS,
    SOL,
    Sandbox,
    Sent,
    new_sandbox,
    vault_so,
)


@pytest.fixture
def box() -> Sandbox:
    """5 members, threshold 3, timelock 1 day; emergency 4 of 5; the payer proposes."""
    return new_sandbox()


def state(box: Sandbox, *addresses: Pubkey) -> dict[Pubkey, Account | None]:
    return {a: box.svm.get_account(a) for a in addresses}


def funded(box: Sandbox) -> Keypair:
    someone = Keypair()
    box.svm.airdrop(someone.pubkey(), 10 * SOL)
    return someone


# ------------------------------------------------------------------------- spill


def test_execute_refuses_a_spill_other_than_the_proposal_s(box: Sandbox) -> None:
    """A non-member executes an approved, due proposal naming itself as spill: refused;
    executed with the proposal's spill, the buffer's lamports go there."""
    spill = Keypair().pubkey()
    buffer = box.write_buffer(vault_so(2))
    index = box.propose_upgrade(buffer, spill=spill)
    assert box.proposal(index).spill == spill
    box.approve_all(index)
    box.pass_timelock(index)
    thief = funded(box)
    ix = client.execute_upgrade(
        box.governance, box.proposal_account(index), box.program, buffer, thief.pubkey()
    )
    watched = [
        box.proposal_account(index),
        buffer,
        thief.pubkey(),
        loader.programdata_address(box.program),
    ]
    before = state(box, *watched)
    message_payer = box.payer
    box.payer = thief  # the thief sends and pays
    refused = box.send([ix])
    box.payer = message_payer
    assert refused.custom_code == E.SpillMismatch, refused.logs
    after = state(box, *watched)
    # Only the thief's fee moved; the buffer, proposal and program are as they were.
    assert {a: after[a] for a in watched[:2] + watched[3:]} == {
        a: before[a] for a in watched[:2] + watched[3:]
    }
    thief_after = after[thief.pubkey()]
    thief_before = before[thief.pubkey()]
    assert thief_after is not None and thief_before is not None
    assert thief_after.lamports <= thief_before.lamports

    buffer_lamports = box.svm.get_balance(buffer)
    assert buffer_lamports
    assert box.execute_upgrade(index).ok
    assert box.svm.get_balance(spill) == buffer_lamports
    assert box.proposal(index).status == ProposalStatus.EXECUTED


# ------------------------------------------------------------------ who proposes


def test_a_non_member_cannot_take_the_next_proposal_number(box: Sandbox) -> None:
    buffer = box.write_buffer(vault_so(2))
    expected = box.gov().proposal_count + 1
    squatter = funded(box)
    digest = loader.buffer_hash(box.data(buffer))
    squat = client.propose_upgrade(
        box.governance, expected, box.program, buffer, digest, squatter.pubkey()
    )
    before = state(box, box.governance, box.proposal_account(expected))
    sent = box.send([squat], squatter)
    assert sent.custom_code == E.NotAllowedToPropose, sent.logs
    assert state(box, box.governance, box.proposal_account(expected)) == before
    assert before[box.proposal_account(expected)] is None
    # The operator's own propose takes the number it expected.
    assert box.propose_upgrade(buffer) == expected
    assert box.proposal(expected).proposer == box.payer.pubkey()


def test_a_member_may_propose_and_a_config_change_sets_the_proposer(box: Sandbox) -> None:
    member = box.members[0]
    box.svm.airdrop(member.pubkey(), 10 * SOL)
    index = box.gov().proposal_count + 1
    new_proposer = Keypair().pubkey()
    config = GovernanceConfig(
        tuple(m.pubkey() for m in box.members), 3, 86_400, 4, 600, new_proposer
    )
    box.ok([client.propose_config(box.governance, index, config, member.pubkey())], member)
    assert box.proposal(index).new_config == config
    box.approve_all(index)
    box.pass_timelock(index)
    box.ok([client.execute_config(box.governance, box.proposal_account(index))])
    assert box.gov().proposer == new_proposer
    # The payer was the proposer; it no longer is.
    buffer = box.write_buffer(vault_so(2))
    digest = loader.buffer_hash(box.data(buffer))
    ix = client.propose_upgrade(
        box.governance, index + 1, box.program, buffer, digest, box.payer.pubkey()
    )
    assert box.send([ix]).custom_code == E.NotAllowedToPropose


# ------------------------------------------------------------- emergency policy


def config_args(threshold: int, emergency: int, keys: list[bytes]) -> bytes:
    """Borsh config arguments written by hand (the client refuses bad ones itself)."""
    head = struct.pack("<BQBQ", threshold, 86_400, emergency, 0) + bytes(32)
    return head + struct.pack("<I", len(keys)) + b"".join(keys)


def raw_create(box: Sandbox, args: bytes) -> tuple[Sent, Pubkey]:
    create_key = Keypair()
    ix = client.create_governance(
        create_key.pubkey(),
        box.payer.pubkey(),
        GovernanceConfig((Keypair().pubkey(),), 1, 0, 1, 0),
        MAINNET_GENESIS,
    )
    genesis = bytes(ix.data)[8:40]
    data = instruction_discriminator("create_governance") + genesis + args
    sent = box.send([Instruction(ix.program_id, data, ix.accounts)], create_key)
    return sent, client.governance_address(create_key.pubkey())


def raw_propose_config(box: Sandbox, args: bytes) -> tuple[Sent, Pubkey]:
    index = box.gov().proposal_count + 1
    ix = client.propose_config(
        box.governance, index, GovernanceConfig((Keypair().pubkey(),), 1, 0, 1, 0),
        box.payer.pubkey(),
    )  # fmt: skip
    data = instruction_discriminator("propose_config") + args
    sent = box.send([Instruction(ix.program_id, data, ix.accounts)])
    return sent, box.proposal_account(index)


def test_an_emergency_threshold_below_the_threshold_is_refused(box: Sandbox) -> None:
    keys = [bytes(Keypair().pubkey()) for _ in range(5)]
    args = config_args(4, 1, keys)  # 4 of 5, but 1 of 5 in an emergency
    sent, governance = raw_create(box, args)
    assert sent.custom_code == E.EmergencyThresholdBelowThreshold, sent.logs
    assert box.svm.get_account(governance) is None

    before = box.data(box.governance)
    sent, proposal = raw_propose_config(box, args)
    assert sent.custom_code == E.EmergencyThresholdBelowThreshold
    assert box.svm.get_account(proposal) is None and box.data(box.governance) == before

    members = tuple(Keypair().pubkey() for _ in range(5))
    with pytest.raises(ValueError, match="emergency_threshold 1 is below threshold 4"):
        client.check_config(GovernanceConfig(members, 4, 0, 1, 0))
    assert raw_create(box, config_args(4, 4, keys))[0].ok  # equal is fine


# ------------------------------------------------------------------ member keys

OFF_CURVE = (2).to_bytes(32, "little")  # y = 2 has no x on edwards25519


@pytest.mark.parametrize(
    "key",
    [*small_order_points(), OFF_CURVE],
    ids=[f"small-order-{i}" for i in range(8)] + ["off-curve"],
)
def test_a_member_key_that_nobody_holds_alone_is_refused(box: Sandbox, key: bytes) -> None:
    keys = [bytes(Keypair().pubkey()) for _ in range(2)] + [key]
    sent, governance = raw_create(box, config_args(2, 2, keys))
    assert sent.custom_code == E.InvalidMemberKey, sent.logs
    assert box.svm.get_account(governance) is None

    before = box.data(box.governance)
    sent, proposal = raw_propose_config(box, config_args(2, 2, keys))
    assert sent.custom_code == E.InvalidMemberKey
    assert box.svm.get_account(proposal) is None and box.data(box.governance) == before

    members = tuple(Pubkey.from_bytes(k) for k in keys)
    with pytest.raises(ValueError, match="not an ed25519 public key of large order"):
        client.check_config(GovernanceConfig(members, 2, 0, 2, 0))


# ------------------------------------------------------------------------ adopt


def deploy_unmanaged(box: Sandbox) -> Pubkey:
    """demo_vault v1 deployed with the payer as its upgrade authority."""
    program = Keypair()
    so = vault_so(1)
    payer = box.payer.pubkey()
    buffer = box.write_buffer(so, to_pda=False)
    rent = box.svm.minimum_balance_for_rent_exemption(loader.PROGRAM_ACCOUNT_SIZE)
    box.ok(
        loader.deploy_program(payer, program.pubkey(), buffer, payer, rent, 3 * len(so)), program
    )
    box.next_slot()
    return program.pubkey()


def authority_of(box: Sandbox, program: Pubkey) -> Pubkey | None:
    state_ = loader.decode_state(box.data(loader.programdata_address(program)))
    assert isinstance(state_, loader.ProgramData)
    return state_.authority


def test_adopt_then_upgrade_through_a_proposal(box: Sandbox) -> None:
    program = deploy_unmanaged(box)
    adopt = client.adopt_program(box.governance, program, box.payer.pubkey())
    assert box.send([adopt]).ok
    assert authority_of(box, program) == box.authority

    box.program = program
    index = box.propose_upgrade(box.write_buffer(vault_so(2)))
    box.approve_all(index)
    box.pass_timelock(index)
    assert box.execute_upgrade(index).ok
    assert box.programdata().authority == box.authority
    assert loader.programdata_hash(
        box.data(loader.programdata_address(program))
    ) == loader.verifiable_hash(vault_so(2))


def test_adopt_by_a_mistyped_governance_changes_nothing(box: Sandbox) -> None:
    program = deploy_unmanaged(box)
    programdata = loader.programdata_address(program)
    before = box.data(programdata)
    typo = Keypair().pubkey()  # no governance lives there
    sent = box.send([client.adopt_program(typo, program, box.payer.pubkey())])
    assert not sent.ok and sent.custom_code == AnchorError.AccountOwnedByWrongProgram
    assert box.data(programdata) == before
    # Only the current authority can hand it over.
    someone = funded(box)
    sent = box.send([client.adopt_program(box.governance, program, someone.pubkey())], someone)
    assert not sent.ok and box.data(programdata) == before


def test_what_the_checked_adopt_prevents(box: Sandbox) -> None:
    """Outside the program an operator cannot use the loader's checked form with a PDA as
    the new authority (nobody can sign for it), so the plain form is used, and a typo in
    the address strands the program for good."""
    program = deploy_unmanaged(box)
    programdata = loader.programdata_address(program)
    payer = box.payer.pubkey()
    checked = loader.set_authority_checked(programdata, payer, box.authority)
    # No keypair exists for the PDA: the best a transaction can do is name it unsigned.
    unsigned = [m if m.pubkey != box.authority else AccountMeta(m.pubkey, False, False)
                for m in checked.accounts]  # fmt: skip
    sent = box.send([Instruction(checked.program_id, checked.data, unsigned)])
    assert not sent.ok and "MissingRequiredSignature" in str(sent.error)
    assert authority_of(box, program) == payer

    typo = Keypair().pubkey()  # one character off the PDA, in effect: a key nobody holds
    assert box.send([loader.set_authority(programdata, payer, typo)]).ok
    assert authority_of(box, program) == typo  # stranded: no governance, no key

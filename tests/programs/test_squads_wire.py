"""Squads v4 instructions and PDAs built by programs/squads/client.py equal, byte for byte,
what the official SDK ``@sqds/multisig`` builds for the same inputs: program id, data,
and every account meta (key, signer, writable, order)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from programs import loader
from programs.squads import client as squads
from tests.squads_sdk import described, sdk

SEEDS = range(6)


def key() -> Pubkey:
    return Keypair().pubkey()


def maybe_key(rng: random.Random) -> Pubkey | None:
    return key() if rng.random() < 0.5 else None


def opt(value: Pubkey | None) -> str | None:
    return None if value is None else str(value)


MEMOS = (None, "", "ship v2", "Zürich upgrade \u2713")


def test_pdas_equal_the_sdks() -> None:
    rng = random.Random(14)
    cases = [
        (key(), rng.randrange(256), rng.choice([0, 1, 2**32 + 5, 2**53 - 1, rng.getrandbits(64)]))
        for _ in range(12)
    ]
    ops = [
        {
            "op": "pdas",
            "create_key": str(ck),
            "vault_index": vi,
            "transaction_index": str(ti),
            "ephemeral_index": vi % 7,
        }
        for ck, vi, ti in cases
    ]
    for (ck, vi, ti), theirs in zip(cases, sdk(ops), strict=True):
        ms = squads.multisig_pda(ck)
        tx = squads.transaction_pda(ms[0], ti)
        ours = {
            "multisig": ms,
            "vault": squads.vault_pda(ms[0], vi),
            "transaction": tx,
            "proposal": squads.proposal_pda(ms[0], ti),
            "ephemeral": squads.ephemeral_signer_pda(tx[0], vi % 7),
            "program_config": squads.program_config_pda(),
        }
        assert {k: [str(a), b] for k, (a, b) in ours.items()} == theirs


def test_pda_indexes_out_of_range_are_refused() -> None:
    ms = key()
    with pytest.raises(ValueError, match="vault index"):
        squads.vault_pda(ms, 256)
    with pytest.raises(ValueError, match="transaction index"):
        squads.transaction_pda(ms, -1)
    with pytest.raises(ValueError, match="transaction index"):
        squads.proposal_pda(ms, 2**64)


@pytest.mark.parametrize("seed", SEEDS)
def test_proposal_instructions_equal_the_sdks(seed: int) -> None:
    rng = random.Random(seed)
    ms, member = key(), key()
    index = rng.choice([1, rng.randrange(1, 2**32), 2**53 - 1])
    memo = MEMOS[seed % len(MEMOS)]
    rent_payer = maybe_key(rng)
    draft = bool(seed % 2)
    ours: list[Instruction] = [
        squads.proposal_create(
            multisig=ms, transaction_index=index, creator=member, rent_payer=rent_payer, draft=draft
        ),
        squads.proposal_approve(multisig=ms, transaction_index=index, member=member, memo=memo),
        squads.proposal_reject(multisig=ms, transaction_index=index, member=member, memo=memo),
        squads.proposal_cancel(multisig=ms, transaction_index=index, member=member, memo=memo),
    ]
    vote = {
        "multisig": str(ms),
        "transactionIndex": str(index),
        "member": str(member),
        "memo": memo,
    }
    ops: list[dict[str, Any]] = [
        {
            "op": "ix",
            "name": "proposalCreate",
            "args": {
                "multisig": str(ms),
                "transactionIndex": str(index),
                "creator": str(member),
                "rentPayer": opt(rent_payer),
                "isDraft": draft,
            },
        },
        {"op": "ix", "name": "proposalApprove", "args": vote},
        {"op": "ix", "name": "proposalReject", "args": vote},
        {"op": "ix", "name": "proposalCancel", "args": vote},
    ]
    assert [described(ix) for ix in ours] == sdk(ops)


@pytest.mark.parametrize("seed", SEEDS)
def test_multisig_create_v2_equals_the_sdks(seed: int) -> None:
    rng = random.Random(100 + seed)
    members = [squads.Member(key(), rng.randrange(8)) for _ in range(rng.randrange(1, 11))]
    create_key, creator, treasury = key(), key(), key()
    threshold, time_lock = rng.randrange(1, len(members) + 1), rng.choice([0, 60, 172_800])
    config_authority, rent_collector = maybe_key(rng), maybe_key(rng)
    memo = MEMOS[seed % len(MEMOS)]
    ours = squads.multisig_create_v2(
        create_key=create_key,
        creator=creator,
        treasury=treasury,
        members=members,
        threshold=threshold,
        time_lock=time_lock,
        config_authority=config_authority,
        rent_collector=rent_collector,
        memo=memo,
    )
    (theirs,) = sdk(
        [
            {
                "op": "ix",
                "name": "multisigCreateV2",
                "args": {
                    "treasury": str(treasury),
                    "creator": str(creator),
                    "createKey": str(create_key),
                    "configAuthority": opt(config_authority),
                    "threshold": threshold,
                    "members": [{"key": str(m.key), "permissions": m.permissions} for m in members],
                    "timeLock": time_lock,
                    "rentCollector": opt(rent_collector),
                    "memo": memo,
                },
            }
        ]
    )
    assert described(ours) == theirs


def inner_instructions(kind: str, vault: Pubkey, rng: random.Random) -> list[Instruction]:
    """What a runbook puts in a vault transaction, the vault as the loader authority."""
    program, buffer, spill, new_authority = key(), key(), key(), key()
    upgrade = loader.upgrade(program, buffer, vault, spill)
    rotate = loader.set_authority_checked(loader.programdata_address(program), vault, new_authority)
    pay = transfer(
        TransferParams(from_pubkey=vault, to_pubkey=spill, lamports=rng.randrange(1, 10**9))
    )
    return {
        "upgrade": [upgrade],
        "set_authority_checked": [rotate],
        "upgrade_then_rotate": [upgrade, rotate],
        "transfer_and_upgrade": [pay, upgrade],
    }[kind]


KINDS = ("upgrade", "set_authority_checked", "upgrade_then_rotate", "transfer_and_upgrade")


def create_op(
    ms: Pubkey,
    index: int,
    creator: Pubkey,
    rent_payer: Pubkey | None,
    vault_index: int,
    ephemeral: int,
    inner: list[Instruction],
    memo: str | None,
) -> dict[str, Any]:
    return {
        "op": "ix",
        "name": "vaultTransactionCreate",
        "args": {
            "multisig": str(ms),
            "transactionIndex": str(index),
            "creator": str(creator),
            "rentPayer": opt(rent_payer),
            "vaultIndex": vault_index,
            "ephemeralSigners": ephemeral,
            "instructions": [described(ix) for ix in inner],
            "memo": memo,
        },
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_vault_transaction_create_equals_the_sdks(kind: str, seed: int) -> None:
    rng = random.Random(f"{kind}{seed}")
    ms, creator, rent_payer = key(), key(), maybe_key(rng)
    index, vault_index, ephemeral = rng.randrange(1, 2**40), rng.randrange(256), rng.randrange(3)
    vault = squads.vault_pda(ms, vault_index)[0]
    inner = inner_instructions(kind, vault, rng)
    memo = MEMOS[seed % len(MEMOS)]
    ours = squads.vault_transaction_create(
        multisig=ms,
        transaction_index=index,
        creator=creator,
        instructions=inner,
        vault_index=vault_index,
        ephemeral_signers=ephemeral,
        rent_payer=rent_payer,
        memo=memo,
    )
    (theirs,) = sdk(
        [create_op(ms, index, creator, rent_payer, vault_index, ephemeral, inner, memo)]
    )
    assert described(ours) == theirs


def vault_transaction_fields(
    ms: Pubkey, index: int, vault_index: int, bumps: bytes, message: squads.VaultTransactionMessage
) -> dict[str, Any]:
    return {
        "multisig": str(ms),
        "creator": str(key()),
        "index": str(index),
        "bump": 254,
        "vaultIndex": vault_index,
        "vaultBump": squads.vault_pda(ms, vault_index)[1],
        "ephemeralSignerBumps": bumps.hex(),
        "message": {
            "numSigners": message.num_signers,
            "numWritableSigners": message.num_writable_signers,
            "numWritableNonSigners": message.num_writable_non_signers,
            "accountKeys": [str(k) for k in message.account_keys],
            "instructions": [
                {
                    "programIdIndex": ix.program_id_index,
                    "accountIndexes": ix.account_indexes.hex(),
                    "data": ix.data.hex(),
                }
                for ix in message.instructions
            ],
            "addressTableLookups": [],
        },
    }


@pytest.mark.parametrize("kind", (*KINDS, "ephemeral_signer"))
@pytest.mark.parametrize("seed", range(2))
def test_vault_transaction_execute_equals_the_sdks(kind: str, seed: int) -> None:
    """The remaining accounts come from the stored message: the SDK reads the account the
    SDK serialized; Python decodes the same bytes."""
    rng = random.Random(f"x{kind}{seed}")
    ms, member = key(), key()
    index, vault_index = rng.randrange(1, 2**40), rng.randrange(256)
    vault = squads.vault_pda(ms, vault_index)[0]
    tx = squads.transaction_pda(ms, index)[0]
    bumps = bytes(squads.ephemeral_signer_pda(tx, i)[1] for i in range(rng.randrange(3)))
    if kind == "ephemeral_signer":
        # An account the program signs for as an ephemeral PDA (e.g. a new buffer).
        bumps = bumps or bytes([squads.ephemeral_signer_pda(tx, 0)[1]])
        eph = squads.ephemeral_signer_pda(tx, 0)[0]
        inner = [
            Instruction(
                key(), b"\x07", [AccountMeta(eph, True, True), AccountMeta(vault, True, True)]
            )
        ]
    else:
        inner = inner_instructions(kind, vault, rng)
    message = squads.compile_message(inner, vault)
    fields = vault_transaction_fields(ms, index, vault_index, bumps, message)
    (account,) = sdk([{"op": "serialize", "account": "VaultTransaction", "fields": fields}])
    stored = squads.decode_vault_transaction(bytes.fromhex(account))
    assert stored.message == message
    ours = squads.vault_transaction_execute(multisig=ms, member=member, transaction=stored)
    args = {
        "multisig": str(ms),
        "transactionIndex": str(index),
        "member": str(member),
        "account": account,
    }
    (theirs,) = sdk([{"op": "ix", "name": "vaultTransactionExecute", "args": args}])
    assert described(ours) == theirs
    # The vault and ephemeral PDAs are never signers of the outer transaction; a real
    # co-signer (SetAuthorityChecked's new authority) is.
    signers = {m.pubkey for m in ours.accounts if m.is_signer}
    assert vault not in signers and member in signers
    if "rotate" in kind or kind == "set_authority_checked":
        assert len(signers) == 2


def test_execute_refuses_a_transaction_of_another_multisig_or_with_lookup_tables() -> None:
    ms = key()
    vault = squads.vault_pda(ms, 0)[0]
    message = squads.compile_message([loader.upgrade(key(), key(), vault, key())], vault)
    stored = squads.VaultTransaction(ms, key(), 3, 255, 0, 255, b"", message)
    with pytest.raises(ValueError, match="belongs to multisig"):
        squads.vault_transaction_execute(multisig=key(), member=key(), transaction=stored)
    lookup = squads.AddressTableLookup(key(), b"\x00", b"")
    with_lookup = squads.VaultTransaction(
        ms,
        key(),
        3,
        255,
        0,
        255,
        b"",
        squads.VaultTransactionMessage(1, 1, 0, (vault,), (), (lookup,)),
    )
    with pytest.raises(ValueError, match="address lookup tables"):
        squads.vault_transaction_execute(multisig=ms, member=key(), transaction=with_lookup)


def test_the_vault_message_of_an_upgrade_names_the_vault_as_the_only_signer() -> None:
    """The compiled Upgrade, read back: the loader's authority is the vault, the spill is
    the one given, and the vault is the message's only signer (the program signs for it)."""
    ms = key()
    vault = squads.vault_pda(ms, 0)[0]
    program, buffer, spill = key(), key(), key()
    message = squads.compile_message([loader.upgrade(program, buffer, vault, spill)], vault)
    assert (message.num_signers, message.num_writable_signers) == (1, 1)
    assert message.account_keys[0] == vault
    (ix,) = message.instructions
    named = [message.account_keys[i] for i in ix.account_indexes]
    assert named[2:4] == [buffer, spill] and named[6] == vault
    assert message.account_keys[ix.program_id_index] == loader.LOADER_ID

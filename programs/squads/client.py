"""Client for Squads v4: PDAs, instruction builders and account decoders, no Prefect, no RPC.

Layouts are read from the program's source (Squads-Protocol/v4,
``programs/squads_multisig_program/src/{state,instructions}``) and the SDK's generated
code (``@sqds/multisig`` 2.1.4); tests/programs/test_squads_wire.py proves every builder,
PDA and decoder here against that SDK byte for byte. Anchor conventions throughout:
instruction data starts with ``sha256("global:<name>")[:8]``, account data with
``sha256("account:<Name>")[:8]``, arguments in borsh.

PDAs (under the program id; every seed list starts with ``"multisig"``)::

    program config  ["multisig", "program_config"]
    multisig        ["multisig", "multisig", create_key]
    vault           ["multisig", multisig, "vault", index u8]
    transaction     ["multisig", multisig, "transaction", index u64 LE]
    proposal        ["multisig", multisig, "transaction", index u64 LE, "proposal"]
    ephemeral       ["multisig", transaction, "ephemeral_signer", index u8]

A vault transaction carries its inner instructions as Squads' own compact
``TransactionMessage`` (u8 and u16 length prefixes, unlike borsh's u32), compiled as the
SDK compiles it: keys ordered writable signers, readonly signers, writable non-signers,
readonly non-signers, each group in first-seen order (payer first, then every
instruction's program id and accounts). Address-table lookups are always empty here. On
chain the program stores it as ``VaultTransactionMessage`` in plain borsh.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntFlag

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from programs.anchor import (
    DISCRIMINATOR_SIZE,
    Reader,
    check_account_discriminator,
    instruction_data,
    pack_bool,
    pack_u8,
    pack_u16,
    pack_u32,
    pack_u64,
)

PROGRAM_ID = Pubkey.from_string("SQDS4ep65T869zMMBKyuUq6aD6EgTu8psMjkvj52pCf")

_SEED_PREFIX = b"multisig"
_U64_MAX = 2**64 - 1


class Permission(IntFlag):
    """A member's permissions mask (``Permissions.mask`` on chain)."""

    INITIATE = 1
    VOTE = 2
    EXECUTE = 4


ALL_PERMISSIONS = Permission.INITIATE | Permission.VOTE | Permission.EXECUTE


# --- PDAs -----------------------------------------------------------------------------


def _u8_seed(name: str, value: int) -> bytes:
    if not 0 <= value <= 255:
        raise ValueError(f"{name} must be between 0 and 255, got {value}")
    return bytes([value])


def _u64_seed(name: str, value: int) -> bytes:
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be between 0 and {_U64_MAX}, got {value}")
    return struct.pack("<Q", value)


def program_config_pda(program_id: Pubkey = PROGRAM_ID) -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([_SEED_PREFIX, b"program_config"], program_id)


def multisig_pda(create_key: Pubkey, program_id: Pubkey = PROGRAM_ID) -> tuple[Pubkey, int]:
    return Pubkey.find_program_address([_SEED_PREFIX, b"multisig", bytes(create_key)], program_id)


def vault_pda(
    multisig: Pubkey, index: int = 0, program_id: Pubkey = PROGRAM_ID
) -> tuple[Pubkey, int]:
    seeds = [_SEED_PREFIX, bytes(multisig), b"vault", _u8_seed("vault index", index)]
    return Pubkey.find_program_address(seeds, program_id)


def transaction_pda(
    multisig: Pubkey, index: int, program_id: Pubkey = PROGRAM_ID
) -> tuple[Pubkey, int]:
    seeds = [_SEED_PREFIX, bytes(multisig), b"transaction", _u64_seed("transaction index", index)]
    return Pubkey.find_program_address(seeds, program_id)


def proposal_pda(
    multisig: Pubkey, transaction_index: int, program_id: Pubkey = PROGRAM_ID
) -> tuple[Pubkey, int]:
    seeds = [
        _SEED_PREFIX,
        bytes(multisig),
        b"transaction",
        _u64_seed("transaction index", transaction_index),
        b"proposal",
    ]
    return Pubkey.find_program_address(seeds, program_id)


def ephemeral_signer_pda(
    transaction: Pubkey, index: int, program_id: Pubkey = PROGRAM_ID
) -> tuple[Pubkey, int]:
    seeds = [_SEED_PREFIX, bytes(transaction), b"ephemeral_signer", _u8_seed("index", index)]
    return Pubkey.find_program_address(seeds, program_id)


# --- borsh helpers the Anchor codec lacks ---------------------------------------------


def _option_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    raw = value.encode()
    return b"\x01" + pack_u32(len(raw)) + raw


def _option_pubkey(value: Pubkey | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + bytes(value)


def _vec_bytes(value: bytes) -> bytes:
    return pack_u32(len(value)) + value


def _signer(pubkey: Pubkey, writable: bool = False) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=True, is_writable=writable)


def _account(pubkey: Pubkey, writable: bool = False) -> AccountMeta:
    return AccountMeta(pubkey, is_signer=False, is_writable=writable)


# --- the vault transaction message ----------------------------------------------------


@dataclass(frozen=True)
class CompiledInstruction:
    program_id_index: int
    account_indexes: bytes
    data: bytes


@dataclass(frozen=True)
class AddressTableLookup:
    account_key: Pubkey
    writable_indexes: bytes
    readonly_indexes: bytes


@dataclass(frozen=True)
class VaultTransactionMessage:
    """The inner transaction, as compiled (and, on chain, as stored)."""

    num_signers: int
    num_writable_signers: int
    num_writable_non_signers: int
    account_keys: tuple[Pubkey, ...]
    instructions: tuple[CompiledInstruction, ...]
    address_table_lookups: tuple[AddressTableLookup, ...] = ()

    def is_signer_index(self, index: int) -> bool:
        return index < self.num_signers

    def is_static_writable_index(self, index: int) -> bool:
        if index >= len(self.account_keys):
            return False
        if index < self.num_writable_signers:
            return True
        if index >= self.num_signers:
            return index - self.num_signers < self.num_writable_non_signers
        return False

    def compact_bytes(self) -> bytes:
        """Squads' ``TransactionMessage`` wire form, the ``transaction_message`` argument."""
        out = bytearray(
            [self.num_signers, self.num_writable_signers, self.num_writable_non_signers]
        )
        out += _small_len(self.account_keys, 1, "account keys")
        for key in self.account_keys:
            out += bytes(key)
        out += _small_len(self.instructions, 1, "instructions")
        for ix in self.instructions:
            out += pack_u8(ix.program_id_index)
            out += _small_len(ix.account_indexes, 1, "instruction accounts") + ix.account_indexes
            out += _small_len(ix.data, 2, "instruction data") + ix.data
        out += _small_len(self.address_table_lookups, 1, "address table lookups")
        for lookup in self.address_table_lookups:
            out += bytes(lookup.account_key)
            out += _small_len(lookup.writable_indexes, 1, "writable indexes")
            out += lookup.writable_indexes
            out += _small_len(lookup.readonly_indexes, 1, "readonly indexes")
            out += lookup.readonly_indexes
        return bytes(out)


def _small_len(items: Sequence[object] | bytes, width: int, what: str) -> bytes:
    limit = 256**width - 1
    if len(items) > limit:
        raise ValueError(f"a vault transaction holds at most {limit} {what}, got {len(items)}")
    return pack_u8(len(items)) if width == 1 else pack_u16(len(items))


def compile_message(instructions: Sequence[Instruction], payer: Pubkey) -> VaultTransactionMessage:
    """Compile ``instructions`` as the SDK's ``compileToWrappedMessageV0`` does (no tables).

    ``payer`` is normally the vault PDA: it is the first writable signer.
    """
    # Insertion-ordered, as the SDK's Map: payer, then per instruction its program id
    # (neither signer nor writable by itself) and its accounts, flags OR-ed.
    metas: dict[Pubkey, list[bool]] = {payer: [True, True]}
    for ix in instructions:
        metas.setdefault(ix.program_id, [False, False])
        for meta in ix.accounts:
            flags = metas.setdefault(meta.pubkey, [False, False])
            flags[0] = flags[0] or meta.is_signer
            flags[1] = flags[1] or meta.is_writable
    groups: list[list[Pubkey]] = [[], [], [], []]
    for key, (signer, writable) in metas.items():
        groups[(0 if signer else 2) + (0 if writable else 1)].append(key)
    keys = tuple(k for group in groups for k in group)
    if len(keys) > 256:
        raise ValueError(f"a vault transaction holds at most 256 account keys, got {len(keys)}")
    index = {k: i for i, k in enumerate(keys)}
    compiled = tuple(
        CompiledInstruction(
            program_id_index=index[ix.program_id],
            account_indexes=bytes(index[m.pubkey] for m in ix.accounts),
            data=bytes(ix.data),
        )
        for ix in instructions
    )
    return VaultTransactionMessage(
        num_signers=len(groups[0]) + len(groups[1]),
        num_writable_signers=len(groups[0]),
        num_writable_non_signers=len(groups[2]),
        account_keys=keys,
        instructions=compiled,
    )


# --- instructions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    key: Pubkey
    permissions: int

    def can(self, permission: Permission) -> bool:
        return self.permissions & permission == permission


def multisig_create_v2(
    *,
    create_key: Pubkey,
    creator: Pubkey,
    treasury: Pubkey,
    members: Sequence[Member],
    threshold: int,
    time_lock: int,
    config_authority: Pubkey | None = None,
    rent_collector: Pubkey | None = None,
    memo: str | None = None,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Create a multisig; ``create_key`` and ``creator`` sign; the fee goes to ``treasury``
    (the ProgramConfig's treasury on that cluster)."""
    data = instruction_data(
        "multisig_create_v2",
        _option_pubkey(config_authority),
        pack_u16(threshold),
        pack_u32(len(members)),
        *(bytes(m.key) + pack_u8(m.permissions) for m in members),
        pack_u32(time_lock),
        _option_pubkey(rent_collector),
        _option_string(memo),
    )
    accounts = [
        _account(program_config_pda(program_id)[0]),
        _account(treasury, writable=True),
        _account(multisig_pda(create_key, program_id)[0], writable=True),
        _signer(create_key),
        _signer(creator, writable=True),
        _account(SYSTEM_PROGRAM_ID),
    ]
    return Instruction(program_id, data, accounts)


def vault_transaction_create(
    *,
    multisig: Pubkey,
    transaction_index: int,
    creator: Pubkey,
    instructions: Sequence[Instruction],
    vault_index: int = 0,
    ephemeral_signers: int = 0,
    rent_payer: Pubkey | None = None,
    memo: str | None = None,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Store ``instructions`` (to run signed by vault ``vault_index``) as transaction
    ``transaction_index`` of ``multisig``; ``creator`` needs the Initiate permission."""
    vault = vault_pda(multisig, vault_index, program_id)[0]
    message = compile_message(instructions, vault).compact_bytes()
    data = instruction_data(
        "vault_transaction_create",
        pack_u8(vault_index),
        pack_u8(ephemeral_signers),
        _vec_bytes(message),
        _option_string(memo),
    )
    accounts = [
        _account(multisig, writable=True),
        _account(transaction_pda(multisig, transaction_index, program_id)[0], writable=True),
        _signer(creator),
        _signer(rent_payer or creator, writable=True),
        _account(SYSTEM_PROGRAM_ID),
    ]
    return Instruction(program_id, data, accounts)


def proposal_create(
    *,
    multisig: Pubkey,
    transaction_index: int,
    creator: Pubkey,
    rent_payer: Pubkey | None = None,
    draft: bool = False,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """Open the proposal of transaction ``transaction_index`` (Active unless ``draft``)."""
    data = instruction_data("proposal_create", pack_u64(transaction_index), pack_bool(draft))
    accounts = [
        _account(multisig),
        _account(proposal_pda(multisig, transaction_index, program_id)[0], writable=True),
        _signer(creator),
        _signer(rent_payer or creator, writable=True),
        _account(SYSTEM_PROGRAM_ID),
    ]
    return Instruction(program_id, data, accounts)


def _proposal_vote(
    name: str,
    multisig: Pubkey,
    transaction_index: int,
    member: Pubkey,
    memo: str | None,
    program_id: Pubkey,
) -> Instruction:
    accounts = [
        _account(multisig),
        _signer(member, writable=True),
        _account(proposal_pda(multisig, transaction_index, program_id)[0], writable=True),
    ]
    return Instruction(program_id, instruction_data(name, _option_string(memo)), accounts)


def proposal_approve(
    *,
    multisig: Pubkey,
    transaction_index: int,
    member: Pubkey,
    memo: str | None = None,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """``member`` (Vote permission) approves the proposal of ``transaction_index``."""
    return _proposal_vote("proposal_approve", multisig, transaction_index, member, memo, program_id)


def proposal_reject(
    *,
    multisig: Pubkey,
    transaction_index: int,
    member: Pubkey,
    memo: str | None = None,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """``member`` (Vote permission) rejects the proposal of ``transaction_index``."""
    return _proposal_vote("proposal_reject", multisig, transaction_index, member, memo, program_id)


def proposal_cancel(
    *,
    multisig: Pubkey,
    transaction_index: int,
    member: Pubkey,
    memo: str | None = None,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """``member`` (Vote permission) votes to cancel an Approved proposal."""
    return _proposal_vote("proposal_cancel", multisig, transaction_index, member, memo, program_id)


def execute_remaining_accounts(
    transaction: VaultTransaction, program_id: Pubkey = PROGRAM_ID
) -> list[AccountMeta]:
    """The accounts ``vault_transaction_execute`` needs after its own four, derived from
    the stored message as the SDK's ``accountsForTransactionExecute`` does: every static
    key, writable as the message says, a signer when the message says so unless it is the
    vault or an ephemeral signer (PDAs the program signs for)."""
    if transaction.message.address_table_lookups:
        raise ValueError(
            "this vault transaction loads accounts from address lookup tables; "
            "only messages without lookups are supported"
        )
    tx_address = transaction_pda(transaction.multisig, transaction.index, program_id)[0]
    vault = vault_pda(transaction.multisig, transaction.vault_index, program_id)[0]
    pdas = {vault} | {
        ephemeral_signer_pda(tx_address, i, program_id)[0]
        for i in range(len(transaction.ephemeral_signer_bumps))
    }
    message = transaction.message
    return [
        AccountMeta(
            key,
            is_signer=message.is_signer_index(i) and key not in pdas,
            is_writable=message.is_static_writable_index(i),
        )
        for i, key in enumerate(message.account_keys)
    ]


def vault_transaction_execute(
    *,
    multisig: Pubkey,
    member: Pubkey,
    transaction: VaultTransaction,
    program_id: Pubkey = PROGRAM_ID,
) -> Instruction:
    """``member`` (Execute permission) runs the stored ``transaction`` once its proposal is
    Approved and the time lock has passed."""
    if transaction.multisig != multisig:
        raise ValueError(
            f"vault transaction {transaction.index} belongs to multisig "
            f"{transaction.multisig}, not {multisig}"
        )
    index = transaction.index
    accounts = [
        _account(multisig),
        _account(proposal_pda(multisig, index, program_id)[0], writable=True),
        _account(transaction_pda(multisig, index, program_id)[0]),
        _signer(member),
        *execute_remaining_accounts(transaction, program_id),
    ]
    return Instruction(program_id, instruction_data("vault_transaction_execute"), accounts)


# --- accounts -------------------------------------------------------------------------


def _vec(reader: Reader, what: str, max_items: int) -> int:
    count = reader.u32()
    if count > max_items:
        raise ValueError(f"{what}: {count} items cannot fit in the account")
    return count


@dataclass(frozen=True)
class Multisig:
    create_key: Pubkey
    config_authority: Pubkey
    threshold: int
    time_lock: int
    transaction_index: int
    stale_transaction_index: int
    rent_collector: Pubkey | None
    bump: int
    members: tuple[Member, ...]

    @property
    def controlled(self) -> bool:
        """Whether the config authority can change the multisig without a vote (the
        default key means "autonomous": only config transactions change it)."""
        return self.config_authority != Pubkey.default()

    def member(self, key: Pubkey) -> Member | None:
        return next((m for m in self.members if m.key == key), None)

    @property
    def voters(self) -> tuple[Pubkey, ...]:
        """The members with Vote permission: who approves, under ``threshold``."""
        return tuple(m.key for m in self.members if m.can(Permission.VOTE))


def decode_multisig(data: bytes) -> Multisig:
    check_account_discriminator(data, "Multisig")
    r = Reader(data, DISCRIMINATOR_SIZE)
    create_key, config_authority = r.pubkey(), r.pubkey()
    threshold, time_lock = r.u16(), r.u32()
    transaction_index, stale = r.u64(), r.u64()
    rent_collector = r.pubkey() if r.bool() else None
    bump = r.u8()
    count = _vec(r, "members", len(data) // 33)
    members = tuple(Member(r.pubkey(), r.u8()) for _ in range(count))
    return Multisig(
        create_key=create_key,
        config_authority=config_authority,
        threshold=threshold,
        time_lock=time_lock,
        transaction_index=transaction_index,
        stale_transaction_index=stale,
        rent_collector=rent_collector,
        bump=bump,
        members=members,
    )


# ProposalStatus variants, in the enum's order on chain. Executing (deprecated, still in
# the enum) is the one without a timestamp.
PROPOSAL_STATUSES = (
    "Draft",
    "Active",
    "Rejected",
    "Approved",
    "Executing",
    "Executed",
    "Cancelled",
)


@dataclass(frozen=True)
class ProposalStatus:
    kind: str
    timestamp: int | None  # unix seconds; None for Executing


@dataclass(frozen=True)
class Proposal:
    multisig: Pubkey
    transaction_index: int
    status: ProposalStatus
    bump: int
    approved: tuple[Pubkey, ...]
    rejected: tuple[Pubkey, ...]
    cancelled: tuple[Pubkey, ...]


def decode_proposal(data: bytes) -> Proposal:
    check_account_discriminator(data, "Proposal")
    r = Reader(data, DISCRIMINATOR_SIZE)
    multisig, transaction_index = r.pubkey(), r.u64()
    tag = r.u8()
    if tag >= len(PROPOSAL_STATUSES):
        raise ValueError(f"proposal status {tag} is not one of Squads v4's")
    kind = PROPOSAL_STATUSES[tag]
    status = ProposalStatus(kind, None if kind == "Executing" else r.i64())
    bump = r.u8()
    votes = [
        tuple(r.pubkey() for _ in range(_vec(r, what, len(data) // 32)))
        for what in ("approved", "rejected", "cancelled")
    ]
    return Proposal(multisig, transaction_index, status, bump, *votes)


@dataclass(frozen=True)
class VaultTransaction:
    multisig: Pubkey
    creator: Pubkey
    index: int
    bump: int
    vault_index: int
    vault_bump: int
    ephemeral_signer_bumps: bytes
    message: VaultTransactionMessage


def _bytes(r: Reader, what: str) -> bytes:
    return r.take(_vec(r, what, len(r.data)))


def decode_vault_transaction(data: bytes) -> VaultTransaction:
    check_account_discriminator(data, "VaultTransaction")
    r = Reader(data, DISCRIMINATOR_SIZE)
    multisig, creator, index = r.pubkey(), r.pubkey(), r.u64()
    bump, vault_index, vault_bump = r.u8(), r.u8(), r.u8()
    ephemeral = _bytes(r, "ephemeral signer bumps")
    header = (r.u8(), r.u8(), r.u8())
    keys = tuple(r.pubkey() for _ in range(_vec(r, "account keys", len(data) // 32)))
    instructions = tuple(
        CompiledInstruction(r.u8(), _bytes(r, "account indexes"), _bytes(r, "data"))
        for _ in range(_vec(r, "instructions", len(data)))
    )
    lookups = tuple(
        AddressTableLookup(r.pubkey(), _bytes(r, "writable indexes"), _bytes(r, "readonly"))
        for _ in range(_vec(r, "address table lookups", len(data) // 32))
    )
    message = VaultTransactionMessage(*header, keys, instructions, lookups)
    return VaultTransaction(
        multisig, creator, index, bump, vault_index, vault_bump, ephemeral, message
    )

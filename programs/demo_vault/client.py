"""Client for demo_vault, the sample program the runbooks upgrade, migrate and pause.

Two versions live side by side: build names ``demo_vault/v1`` and ``demo_vault/v2``
(``programs/demo_vault/v1/vault.c``, ``programs/demo_vault/v2/vault.c``); v2 is the upgrade
of v1 at the same program id.

Accounts (Anchor-style: 8-byte discriminator first; fixed, C-aligned layouts):

``Vault`` layout v1, 88 bytes::

    0 disc[8] | 8 version u8 = 1 | 9 pad[7] | 16 owner[32] | 48 config[32] | 80 balance u64

``Vault`` layout v2, 168 bytes (reordered and extended; ``migrate`` converts v1 in place)::

    0 disc[8] | 8 version u8 = 2 | 9 pad[7] | 16 balance u64 | 24 deposits_count u64
    | 32 migrated_slot u64 | 40 owner[32] | 72 config[32] | 104 reserved[64]

``Config``, 48 bytes (one per deployment; each vault records its config at initialize,
so a caller cannot dodge a pause with a config of their own)::

    0 disc[8] | 8 admin[32] | 40 paused u8 | 41 pad[7]

Instructions (data = ``sha256("global:<name>")[:8]`` + little-endian fields):

====================  ==========================  ==========================================
instruction           data after discriminator    accounts (w writable, s signer)
====================  ==========================  ==========================================
init_config           -                           config(w), admin(s)
pause / unpause       -                           config(w), admin(s)
initialize            owner[32], balance u64      vault(w, s), config
deposit               amount u64                  vault(w), owner(s), config
migrate (v2 only)     -                           vault(w) [, payer(s, w), system_program]
====================  ==========================  ==========================================

Every call logs ``demo_vault v1`` or ``demo_vault v2``. Errors are Anchor's framework codes
(:class:`programs.anchor.AnchorError`) and :class:`VaultError` from 6000.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account

from programs.anchor import (
    Reader,
    account_discriminator,
    check_account_discriminator,
    instruction_data,
    pack_pubkey,
    pack_u64,
)

BUILD_V1 = "demo_vault/v1"
BUILD_V2 = "demo_vault/v2"
LOG_V1 = "demo_vault v1"
LOG_V2 = "demo_vault v2"

SYSTEM_PROGRAM_ID = Pubkey.from_string("11111111111111111111111111111111")
# Migrates that fit in one legacy transaction (1232 bytes) signed by the fee payer alone:
# each adds a 32-byte vault key and a 12-byte instruction. ~4 k CU each with a top-up.
MIGRATES_PER_TRANSACTION = 24
MIGRATES_PER_TRANSACTION_WITH_PAYER = 22
VAULT_DISCRIMINATOR = account_discriminator("Vault")
CONFIG_DISCRIMINATOR = account_discriminator("Config")


class VaultError(IntEnum):
    """demo_vault's own error codes (custom program errors)."""

    Paused = 6000  # deposit while the config is paused (the kill switch)
    NotMigrated = 6001  # v2 deposit on a vault still on layout v1: run migrate first
    UnsupportedLayout = 6002  # a layout this program version does not know (e.g. after rollback)
    Overflow = 6003
    RentTopUpRequired = 6004  # migrate needs a payer to make the larger vault rent-exempt


def _vault_reader(data: bytes, version: int) -> Reader:
    """A reader past a vault's common header (discriminator, layout version, padding),
    refusing any other layout version."""
    check_account_discriminator(data, "Vault")
    r = Reader(data, 8)
    found = r.u8()
    if found != version:
        raise ValueError(f"vault layout is v{found}, not v{version}")
    r.skip(7)
    return r


@dataclass(frozen=True)
class VaultV1:
    owner: Pubkey
    config: Pubkey
    balance: int

    VERSION: ClassVar[int] = 1
    SIZE: ClassVar[int] = 88

    @classmethod
    def decode(cls, data: bytes) -> VaultV1:
        r = _vault_reader(data, cls.VERSION)
        return cls(owner=r.pubkey(), config=r.pubkey(), balance=r.u64())

    def encode(self) -> bytes:
        """Account data as the program writes it (for fixtures and backups)."""
        return (
            VAULT_DISCRIMINATOR
            + bytes([self.VERSION])
            + bytes(7)
            + pack_pubkey(self.owner)
            + pack_pubkey(self.config)
            + pack_u64(self.balance)
        )


@dataclass(frozen=True)
class VaultV2:
    owner: Pubkey
    config: Pubkey
    balance: int
    deposits_count: int
    migrated_slot: int

    VERSION: ClassVar[int] = 2
    SIZE: ClassVar[int] = 168

    @classmethod
    def decode(cls, data: bytes) -> VaultV2:
        r = _vault_reader(data, cls.VERSION)
        balance, deposits_count, migrated_slot = r.u64(), r.u64(), r.u64()
        return cls(
            owner=r.pubkey(),
            config=r.pubkey(),
            balance=balance,
            deposits_count=deposits_count,
            migrated_slot=migrated_slot,
        )

    def encode(self) -> bytes:
        return (
            VAULT_DISCRIMINATOR
            + bytes([self.VERSION])
            + bytes(7)
            + pack_u64(self.balance)
            + pack_u64(self.deposits_count)
            + pack_u64(self.migrated_slot)
            + pack_pubkey(self.owner)
            + pack_pubkey(self.config)
            + bytes(64)
        )


@dataclass(frozen=True)
class Config:
    admin: Pubkey
    paused: bool

    SIZE: ClassVar[int] = 48

    @classmethod
    def decode(cls, data: bytes) -> Config:
        check_account_discriminator(data, "Config")
        r = Reader(data, 8)
        return cls(admin=r.pubkey(), paused=r.bool())

    def encode(self) -> bytes:
        return CONFIG_DISCRIMINATOR + pack_pubkey(self.admin) + bytes([self.paused]) + bytes(7)


def layout_version(data: bytes) -> int:
    """The layout byte of vault account data (1 or 2); ValueError if not a vault."""
    check_account_discriminator(data, "Vault")
    if len(data) < 9:
        raise ValueError("vault account data too short for a layout version")
    return data[8]


def decode_vault(data: bytes) -> VaultV1 | VaultV2:
    """Decode a vault of either layout."""
    version = layout_version(data)
    if version == VaultV1.VERSION:
        return VaultV1.decode(data)
    if version == VaultV2.VERSION:
        return VaultV2.decode(data)
    raise ValueError(f"unknown vault layout v{version}")


def is_vault_account(data: bytes) -> bool:
    """True for vault data of any layout (for scanning getProgramAccounts results)."""
    return bytes(data[:8]) == VAULT_DISCRIMINATOR


# ------------------------------------------------------------------- instructions


def init_config(program_id: Pubkey, config: Pubkey, admin: Pubkey) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("init_config"),
        [AccountMeta(config, False, True), AccountMeta(admin, True, False)],
    )


def pause(program_id: Pubkey, config: Pubkey, admin: Pubkey) -> Instruction:
    """Set the kill switch: deposits fail with VaultError.Paused until unpause."""
    return Instruction(
        program_id,
        instruction_data("pause"),
        [AccountMeta(config, False, True), AccountMeta(admin, True, False)],
    )


def unpause(program_id: Pubkey, config: Pubkey, admin: Pubkey) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("unpause"),
        [AccountMeta(config, False, True), AccountMeta(admin, True, False)],
    )


def initialize(
    program_id: Pubkey, vault: Pubkey, config: Pubkey, owner: Pubkey, balance: int
) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("initialize", pack_pubkey(owner), pack_u64(balance)),
        [AccountMeta(vault, True, True), AccountMeta(config, False, False)],
    )


def deposit(
    program_id: Pubkey, vault: Pubkey, owner: Pubkey, config: Pubkey, amount: int
) -> Instruction:
    return Instruction(
        program_id,
        instruction_data("deposit", pack_u64(amount)),
        [
            AccountMeta(vault, False, True),
            AccountMeta(owner, True, False),
            AccountMeta(config, False, False),
        ],
    )


def migrate(program_id: Pubkey, vault: Pubkey, payer: Pubkey | None = None) -> Instruction:
    """v2's idempotent v1 -> v2 rewrite of one vault.

    With ``payer`` the program tops the vault up to rent exemption for the larger layout
    (a system transfer by CPI); without it the vault must already hold enough lamports
    for ``VaultV2.SIZE``, else it fails with ``VaultError.RentTopUpRequired``.
    """
    accounts = [AccountMeta(vault, False, True)]
    if payer is not None:
        accounts += [AccountMeta(payer, True, True), AccountMeta(SYSTEM_PROGRAM_ID, False, False)]
    return Instruction(program_id, instruction_data("migrate"), accounts)


def migrate_many(
    program_id: Pubkey, vaults: Iterable[Pubkey], payer: Pubkey | None = None
) -> list[Instruction]:
    """One migrate per vault, to pack into a transaction (they share the payer's keys)."""
    return [migrate(program_id, vault, payer) for vault in vaults]


def create_config_instructions(
    payer: Pubkey, config: Pubkey, admin: Pubkey, program_id: Pubkey, lamports: int
) -> list[Instruction]:
    """Create the config account (signers: payer, config, admin) and initialize it."""
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer,
                to_pubkey=config,
                lamports=lamports,
                space=Config.SIZE,
                owner=program_id,
            )
        ),
        init_config(program_id, config, admin),
    ]


def create_vault_instructions(
    payer: Pubkey,
    vault: Pubkey,
    owner: Pubkey,
    balance: int,
    program_id: Pubkey,
    lamports: int,
    *,
    config: Pubkey,
    space: int = VaultV1.SIZE,
) -> list[Instruction]:
    """Create a vault account (signers: payer, vault) and initialize it.

    ``space`` is the layout size the deployed program expects: ``VaultV1.SIZE`` for v1,
    ``VaultV2.SIZE`` for v2. ``lamports`` must make it rent-exempt at that size (funding
    it for ``VaultV2.SIZE`` up front lets a later migrate run without a payer).
    """
    return [
        create_account(
            CreateAccountParams(
                from_pubkey=payer, to_pubkey=vault, lamports=lamports, space=space, owner=program_id
            )
        ),
        initialize(program_id, vault, config, owner, balance),
    ]

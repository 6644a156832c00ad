"""Account migrators: how a program's accounts move from one layout version to the next.

The migration runbook (``flows/migration.py``) is generic; what it needs to know about
one program's accounts is an ``AccountMigrator`` (seed 003's interface):

- ``select(version)``: getProgramAccounts filters matching accounts at a layout version;
- ``layout_version(data)`` and ``decode(data)``: read an account of any known layout;
- ``transform(old)``: the fields the new layout must hold, computed from the old data;
- ``verify(snapshot, current)``: compare a migrated account with its snapshot;
- ``migrate_instructions(...)``: the program's own migrate instructions (the program
  rewrites the account; the runbook only sends, checks and records).

A team adds its program by subclassing ``AccountMigrator`` and decorating the class with
``@register``, or by passing ``"package.module:ClassName"`` as the flow's ``migrator``
parameter; the flow does not change. Plain Python: no Prefect import.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any, ClassVar

from solana.rpc.models import MemcmpOpts
from solders.hash import Hash
from solders.instruction import Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from core.errors import InputError, RunbookError
from programs.anchor import error_name
from programs.demo_vault import client as vault

# getProgramAccounts filters as solana-py takes them: an int is a dataSize filter.
RpcFilter = int | MemcmpOpts

PACKET_DATA_SIZE = 1232  # the largest serialized transaction a cluster accepts
MAX_TRANSACTION_COMPUTE_UNITS = 1_400_000
# Without a SetComputeUnitLimit instruction a transaction gets 200k CU per instruction.
DEFAULT_UNITS_PER_INSTRUCTION = 200_000

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_CUSTOM_ERROR = re.compile(r"custom program error: 0x([0-9a-fA-F]+)|Custom\((\d+)\)")


class MigrationError(RunbookError):
    """A migration could not finish; the message says which accounts and what next."""


class VerificationFailed(MigrationError):
    """Migrated accounts do not match their snapshots; ``accounts`` maps them to why."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = dict(accounts)
        shown = "; ".join(f"{a}: {why}" for a, why in list(self.accounts.items())[:10])
        more = f" (and {len(self.accounts) - 10} more)" if len(self.accounts) > 10 else ""
        super().__init__(
            f"{len(self.accounts)} migrated accounts do not match their snapshots: {shown}{more}. "
            "Stop writes to the program (kill switch) and investigate before anything else."
        )


def b58encode(data: bytes) -> str:
    """Base58 of raw bytes (memcmp filters carry their bytes base58-encoded)."""
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, r = divmod(n, 58)
        digits.append(_B58[r])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(digits))


class AccountMigrator(ABC):
    """One program's account migration from ``source_version`` to ``target_version``."""

    #: Registry name (the flow's ``migrator`` parameter).
    name: ClassVar[str]
    source_version: ClassVar[int]
    target_version: ClassVar[int]
    #: Compute units one account's migrate may use (packing stays within the limit).
    compute_units_per_account: ClassVar[int] = 20_000
    #: The program's own error codes, for readable failures.
    program_errors: ClassVar[type[IntEnum] | None] = None

    @abstractmethod
    def select(self, version: int) -> list[RpcFilter]:
        """getProgramAccounts filters matching this program's accounts at ``version``."""

    @abstractmethod
    def layout_version(self, data: bytes) -> int | None:
        """The layout version of account data; None when it is not such an account."""

    @abstractmethod
    def decode(self, data: bytes) -> dict[str, Any]:
        """The fields of an account of any known layout, as comparable plain values."""

    @abstractmethod
    def transform(self, old: bytes) -> dict[str, Any]:
        """The fields the target layout must hold for an account that held ``old``.

        Fields the migration sets freely (a slot, padding) are left out.
        """

    @abstractmethod
    def migrate_instructions(
        self, program_id: Pubkey, accounts: Sequence[Pubkey], payer: Pubkey
    ) -> list[Instruction]:
        """The instructions that migrate ``accounts`` (all sent in one transaction)."""

    def verify(self, snapshot: bytes, current: bytes | None) -> list[str]:
        """Why ``current`` is not the migration of ``snapshot``; empty when it is."""
        if current is None:
            return ["the account no longer exists"]
        version = self.layout_version(current)
        if version != self.target_version:
            return [f"layout is v{version}, expected v{self.target_version}"]
        try:
            found = self.decode(current)
            expected = self.transform(snapshot)
        except ValueError as exc:
            return [f"undecodable: {exc}"]
        return [
            f"{field} is {found.get(field)!r}, snapshot says {value!r}"
            for field, value in expected.items()
            if found.get(field) != value
        ]

    def describe_error(self, code: int) -> str:
        """A readable name for a custom program error code."""
        return f"{error_name(code, self.program_errors)} ({code})"

    def describe_failure(self, message: str, logs: Sequence[str] = ()) -> str:
        """A one-line reason for a refused migrate transaction, from its error and logs."""
        for text in (message, *reversed(logs)):
            match = _CUSTOM_ERROR.search(text)
            if match:
                hex_code, dec_code = match.groups()
                code = int(hex_code, 16) if hex_code else int(dec_code)
                return f"program error {self.describe_error(code)}: {message}"
        return message

    def accounts_per_transaction(self, program_id: Pubkey, payer: Pubkey) -> int:
        """How many accounts one transaction can migrate: as many as fit in a packet and
        within the compute limit."""
        by_compute = MAX_TRANSACTION_COMPUTE_UNITS // self.compute_units_per_account
        fits = 0
        for n in range(1, by_compute + 1):
            keys = [Pubkey.new_unique() for _ in range(n)]
            ixs = self.migrate_instructions(program_id, keys, payer)
            units = min(len(ixs) * DEFAULT_UNITS_PER_INSTRUCTION, MAX_TRANSACTION_COMPUTE_UNITS)
            if units < n * self.compute_units_per_account:
                break
            tx = Transaction.new_unsigned(Message.new_with_blockhash(ixs, payer, Hash.default()))
            if len(bytes(tx)) > PACKET_DATA_SIZE:
                break
            fits = n
        if fits == 0:
            raise InputError(
                f"migrator {self.name}: one account's migrate does not fit a transaction"
            )
        return fits


class DemoVaultMigrator(AccountMigrator):
    """demo_vault ``Vault`` accounts, layout v1 (88 bytes) to v2 (168 bytes).

    v2's ``migrate`` rewrites a vault in place, topping its rent up from the payer, and
    keeps owner, config and balance; deposits_count starts at 0.
    """

    name = "demo_vault"
    source_version = vault.VaultV1.VERSION
    target_version = vault.VaultV2.VERSION
    # About 4k CU with the rent top-up; leave headroom.
    compute_units_per_account = 8_000
    program_errors = vault.VaultError

    def select(self, version: int) -> list[RpcFilter]:
        # No dataSize filter: a vault of the right version but the wrong size must show up
        # (and fail, recorded) rather than be silently skipped.
        return [
            MemcmpOpts(offset=0, bytes=b58encode(vault.VAULT_DISCRIMINATOR)),
            MemcmpOpts(offset=8, bytes=b58encode(bytes([version]))),
        ]

    def layout_version(self, data: bytes) -> int | None:
        if not vault.is_vault_account(data) or len(data) < 9:
            return None
        return vault.layout_version(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        account = vault.decode_vault(data)
        fields: dict[str, Any] = {
            "owner": str(account.owner),
            "config": str(account.config),
            "balance": account.balance,
        }
        if isinstance(account, vault.VaultV2):
            fields["deposits_count"] = account.deposits_count
            fields["migrated_slot"] = account.migrated_slot
        return fields

    def transform(self, old: bytes) -> dict[str, Any]:
        fields = self.decode(old)
        return {
            "owner": fields["owner"],
            "config": fields["config"],
            "balance": fields["balance"],
            "deposits_count": 0,
        }

    def migrate_instructions(
        self, program_id: Pubkey, accounts: Sequence[Pubkey], payer: Pubkey
    ) -> list[Instruction]:
        return vault.migrate_many(program_id, accounts, payer)


def plan(discovered: Iterable[str], states: Mapping[str, Any], *, retry_failed: bool) -> list[str]:
    """The accounts a migration pass works on, in a stable order.

    ``discovered``: accounts at the source layout on chain now; ``states``: address ->
    recorded state (with ``status``). Work on every discovered account except those that
    failed before (unless ``retry_failed``), and on every recorded ``pending`` account (a
    crashed run may have migrated it: the batch reads the chain before sending).
    """
    work = {
        a for a in discovered if retry_failed or getattr(states.get(a), "status", None) != "failed"
    }
    for address, state in states.items():
        if state.status == "pending" or (retry_failed and state.status == "failed"):
            work.add(address)
    return sorted(work)


MIGRATORS: dict[str, type[AccountMigrator]] = {}


def register(cls: type[AccountMigrator]) -> type[AccountMigrator]:
    """Class decorator: make a migrator available by its ``name``."""
    MIGRATORS[cls.name] = cls
    return cls


register(DemoVaultMigrator)


def get_migrator(name: str) -> AccountMigrator:
    """A registered migrator by name, or one given as ``"package.module:ClassName"``."""
    if name in MIGRATORS:
        return MIGRATORS[name]()
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls: Callable[[], Any] = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"migrator {name!r} cannot be loaded: {exc}") from None
        migrator = cls()
        if not isinstance(migrator, AccountMigrator):
            raise InputError(f"{name} is not an AccountMigrator")
        return migrator
    raise InputError(
        f"unknown migrator {name!r}; registered: {', '.join(sorted(MIGRATORS))}, or pass "
        "'package.module:ClassName' of your own AccountMigrator"
    )


__all__ = [
    "MIGRATORS",
    "AccountMigrator",
    "DemoVaultMigrator",
    "MigrationError",
    "RpcFilter",
    "VerificationFailed",
    "b58encode",
    "get_migrator",
    "plan",
    "register",
]

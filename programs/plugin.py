"""Program plug-ins: what the generic runbooks need to know about one program.

Two interfaces, each with a registry by name. Plain Python: no Prefect import.

``AccountMigrator`` (seed 003's interface): how a program's accounts move from one
layout version to the next. The migration runbook (``flows/migration.py``) is generic;
what it needs to know about one program's accounts is:

- ``select(version)``: getProgramAccounts filters matching accounts at a layout version;
- ``layout_version(data)`` and ``decode(data)``: read an account of any known layout;
- ``transform(old)``: the fields the new layout must hold, computed from the old data;
- ``verify(snapshot, current)``: compare a migrated account with its snapshot;
- ``migrate_instructions(...)``: the program's own migrate instructions (the program
  rewrites the account; the runbook only sends, checks and records).

``ProgramPauser``: a program's own pause switch (one account holding a paused flag, and
an admin), which the kill switch pulls along with the recorded one.

A team adds its program by subclassing either and decorating the class with
``@register`` (migrators, by ``name``) or ``@register_pauser`` (pausers, by ``kind``), or
by passing ``"package.module:ClassName"`` as the flow's ``migrator`` parameter; the flows
do not change. The plug-ins of this repository's own programs live next to them
(``programs/demo_vault/plugins.py``) and are imported the first time a name is looked up.
"""

from __future__ import annotations

import importlib
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, ClassVar

from solana.rpc.models import MemcmpOpts
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from core.errors import InputError
from core.settings import settings
from programs.anchor import error_name

# getProgramAccounts filters as solana-py takes them: an int is a dataSize filter.
RpcFilter = int | MemcmpOpts

PACKET_DATA_SIZE = 1232  # the largest serialized transaction a cluster accepts
MAX_TRANSACTION_COMPUTE_UNITS = 1_400_000
# Without a SetComputeUnitLimit instruction a transaction gets 200k CU per instruction.
DEFAULT_UNITS_PER_INSTRUCTION = 200_000

# Every write carries a compute-unit limit and price (programs.send): room for both.
COMPUTE_BUDGET_INSTRUCTIONS = (
    set_compute_unit_limit(MAX_TRANSACTION_COMPUTE_UNITS),
    set_compute_unit_price(2**64 - 1),
)

_CUSTOM_ERROR = re.compile(r"custom program error: 0x([0-9a-fA-F]+)|Custom\((\d+)\)")

# The plug-ins of this repository's programs, registered when imported.
BUILTIN_PLUGINS: tuple[str, ...] = ("programs.demo_vault.plugins",)


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
        """How many accounts one transaction can migrate: as many as fit in a packet
        beside the compute-budget instructions, and within the compute limit."""
        by_compute = MAX_TRANSACTION_COMPUTE_UNITS // self.compute_units_per_account
        fits = 0
        for n in range(1, by_compute + 1):
            keys = [Pubkey.new_unique() for _ in range(n)]
            ixs = self.migrate_instructions(program_id, keys, payer)
            units = min(len(ixs) * DEFAULT_UNITS_PER_INSTRUCTION, MAX_TRANSACTION_COMPUTE_UNITS)
            if units < n * self.compute_units_per_account:
                break
            message = Message.new_with_blockhash(
                [*COMPUTE_BUDGET_INSTRUCTIONS, *ixs], payer, Hash.default()
            )
            if len(bytes(Transaction.new_unsigned(message))) > PACKET_DATA_SIZE:
                break
            fits = n
        if fits == 0:
            raise InputError(
                f"migrator {self.name}: one account's migrate does not fit a transaction"
            )
        return fits


class ProgramPauser(ABC):
    """A program's own pause switch: one account holding a paused flag, and an admin."""

    #: Registry name (the Program Pause block's ``kind``).
    kind: ClassVar[str]

    def __init__(self, program_id: Pubkey, account: Pubkey) -> None:
        self.program_id = program_id
        self.account = account

    @abstractmethod
    def is_paused(self, data: bytes) -> bool:
        """Whether the pause account's data says paused."""

    @abstractmethod
    def pause(self, admin: Pubkey) -> Instruction: ...

    @abstractmethod
    def unpause(self, admin: Pubkey) -> Instruction: ...


MIGRATORS: dict[str, type[AccountMigrator]] = {}
PAUSERS: dict[str, type[ProgramPauser]] = {}


def register(cls: type[AccountMigrator]) -> type[AccountMigrator]:
    """Class decorator: make a migrator available by its ``name``."""
    MIGRATORS[cls.name] = cls
    return cls


def register_pauser(cls: type[ProgramPauser]) -> type[ProgramPauser]:
    """Class decorator: make a pauser available by its ``kind``."""
    PAUSERS[cls.kind] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_PLUGINS:
        importlib.import_module(module)


def allowed_migrator_modules() -> tuple[str, ...]:
    """Where a migrator class may be loaded from: the built-in plugins and the modules
    (or packages) named in RUNBOOKS_MIGRATOR_MODULES."""
    configured = [m.strip() for m in settings().migrator_modules.split(",") if m.strip()]
    return (*BUILTIN_PLUGINS, *configured)


def _migrator_by_path(name: str) -> AccountMigrator:
    module_name, _, attr = name.partition(":")
    allowed = allowed_migrator_modules()
    # Importing runs the module's code: only from modules the operator named.
    if not any(module_name == a or module_name.startswith(a + ".") for a in allowed):
        raise InputError(
            f"migrator {name!r}: module {module_name!r} is not one migrators may be loaded "
            f"from ({', '.join(allowed)}); add it (or its package) to "
            "RUNBOOKS_MIGRATOR_MODULES on the worker, or register the class under a name"
        )
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"migrator {name!r} cannot be loaded: {exc}") from None
    # The class is checked before anything of it runs.
    if not (inspect.isclass(found) and issubclass(found, AccountMigrator)):
        raise InputError(
            f"migrator {name!r} is not an AccountMigrator class (got {type(found).__name__}); "
            "name a subclass of programs.plugin.AccountMigrator"
        )
    return found()


def get_migrator(name: str) -> AccountMigrator:
    """A registered migrator by name, or one given as ``"package.module:ClassName"``."""
    _load_builtins()
    if name in MIGRATORS:
        return MIGRATORS[name]()
    if ":" in name:
        return _migrator_by_path(name)
    raise InputError(
        f"unknown migrator {name!r}; registered: {', '.join(sorted(MIGRATORS))}, or pass "
        "'package.module:ClassName' of your own AccountMigrator"
    )


def pauser(kind: str, program_id: Pubkey, account: Pubkey) -> ProgramPauser:
    """The pause switch of a program of ``kind``."""
    _load_builtins()
    try:
        return PAUSERS[kind](program_id, account)
    except KeyError:
        raise InputError(
            f"no pause instruction known for programs of kind {kind!r}; known: "
            f"{', '.join(sorted(PAUSERS))}"
        ) from None


__all__ = [
    "BUILTIN_PLUGINS",
    "MIGRATORS",
    "PAUSERS",
    "AccountMigrator",
    "ProgramPauser",
    "RpcFilter",
    "get_migrator",
    "pauser",
    "register",
    "register_pauser",
]

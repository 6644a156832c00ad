"""The kill switch: what it refuses, in words, and the target programs' own pause.

Two layers, both engaged by the kill-switch runbook (``flows/kill_switch.py``):

- the *recorded* switch (``store.migration_records``): every runbook that writes to a
  program checks it first and refuses while it is engaged (upgrade, migration,
  scheduled writes); only the emergency rollback writes under it;
- the program's own pause instruction where it has one (``ProgramPauser``), so users'
  transactions stop too, not only the runbooks'.

Releasing either needs a sign-off. Plain Python: no Prefect import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from solders.instruction import Instruction
from solders.pubkey import Pubkey

from programs.demo_vault import client as vault
from runbooks.errors import InputError, KillSwitchEngaged
from store.migration_records import KillSwitchRecord


def refusal(switches: Sequence[KillSwitchRecord], action: str) -> KillSwitchEngaged:
    """The error a runbook raises when ``switches`` stop ``action``."""
    described = "; ".join(
        f"{s.scope} since {s.changed_at.isoformat(timespec='seconds')} by {s.actor} ({s.reason})"
        for s in switches
    )
    return KillSwitchEngaged(
        f"kill switch engaged: {action} refused. Engaged for {described}. Release it with the "
        "kill-switch runbook (action release, which needs a sign-off), then run this again."
    )


class ProgramPauser(ABC):
    """A program's own pause switch: one account holding a paused flag, and an admin."""

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


class DemoVaultPauser(ProgramPauser):
    """demo_vault's ``Config``: paused refuses deposits (VaultError.Paused)."""

    def is_paused(self, data: bytes) -> bool:
        return vault.Config.decode(data).paused

    def pause(self, admin: Pubkey) -> Instruction:
        return vault.pause(self.program_id, self.account, admin)

    def unpause(self, admin: Pubkey) -> Instruction:
        return vault.unpause(self.program_id, self.account, admin)


PAUSERS: dict[str, type[ProgramPauser]] = {"demo_vault": DemoVaultPauser}


def pauser(kind: str, program_id: Pubkey, account: Pubkey) -> ProgramPauser:
    """The pause switch of a program of ``kind``."""
    try:
        return PAUSERS[kind](program_id, account)
    except KeyError:
        raise InputError(
            f"no pause instruction known for programs of kind {kind!r}; known: "
            f"{', '.join(sorted(PAUSERS))}"
        ) from None


__all__ = ["PAUSERS", "DemoVaultPauser", "ProgramPauser", "pauser", "refusal"]

"""The programs the team operates, and the fee payers that keep them running.

One block rather than a flow parameter: the daily health check, the weekly backup and
the key rotation read the same list, the operator edits it in one place (Blocks in the
Prefect UI), and the key-rotation runbook updates a program's expected authority after a
verified transfer, so the next health check expects the new key.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, field_validator

from core.keys import parse_pubkey


class ManagedProgram(BaseModel):
    """One upgradeable program and the upgrade authority it must have."""

    name: str = Field(title="Name", description="What the team calls it, e.g. vault.")
    program_id: str = Field(title="Program id")
    expected_authority: str | None = Field(
        title="Expected upgrade authority",
        description="The key or PDA that must hold the upgrade authority; empty when the "
        "program must be immutable.",
    )

    @field_validator("program_id", "expected_authority")
    @classmethod
    def _pubkey(cls, value: str | None) -> str | None:
        return None if value in (None, "") else str(parse_pubkey(value, "program key"))


class FeePayer(BaseModel):
    """An account that pays for the runbooks' transactions, with alert thresholds."""

    label: str = Field(title="Label")
    address: str = Field(title="Address")
    warn_below_sol: float = Field(default=1.0, ge=0, title="Warn below (SOL)")
    critical_below_sol: float = Field(default=0.1, ge=0, title="Critical below (SOL)")

    @field_validator("address")
    @classmethod
    def _pubkey(cls, value: str) -> str:
        return str(parse_pubkey(value, "fee payer address"))


class ManagedPrograms(Block):
    """The programs a cluster runs for the team, and the fee payers the runbooks use."""

    _block_type_name = "Managed Programs"
    _block_type_slug = "managed-programs"
    _description = "Program ids with their expected upgrade authority, and fee payers."

    programs: list[ManagedProgram] = Field(default_factory=list, title="Programs")
    fee_payers: list[FeePayer] = Field(default_factory=list, title="Fee payers")

    def find(self, program_id: str) -> ManagedProgram | None:
        return next((p for p in self.programs if p.program_id == program_id), None)

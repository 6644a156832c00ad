"""A program's own pause switch, which the kill switch pulls along with the recorded one."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.keys import keypair_from_json, keypair_to_json, parse_pubkey
from programs.plugin import ProgramPauser, pauser


class ProgramPause(Block):
    """Where a program keeps its paused flag, and the admin key that may set it."""

    _block_type_name = "Program Pause"
    _block_type_slug = "program-pause"
    _description = "A program's pause instruction: its kind, pause account and admin key."

    kind: Literal["demo_vault"] = Field(
        default="demo_vault",
        title="Program kind",
        description="Which pause instruction the program has (programs/plugin.py).",
    )
    program_id: str = Field(title="Program id")
    pause_account: str = Field(
        title="Pause account", description="The account holding the paused flag (a Config)."
    )
    admin_secret: SecretStr = Field(
        title="Admin keypair",
        description="The pause admin's keypair file content (JSON array of 64 integers).",
    )

    def pauser(self) -> ProgramPauser:
        return pauser(
            self.kind,
            parse_pubkey(self.program_id, "program id"),
            parse_pubkey(self.pause_account, "pause account"),
        )

    def admin(self) -> Keypair:
        return keypair_from_json(self.admin_secret.get_secret_value(), what="pause admin")

    @classmethod
    def for_program(
        cls, program_id: Pubkey, pause_account: Pubkey, admin: Keypair, kind: str = "demo_vault"
    ) -> ProgramPause:
        return cls(
            kind=kind,  # type: ignore[arg-type]
            program_id=str(program_id),
            pause_account=str(pause_account),
            admin_secret=SecretStr(keypair_to_json(admin)),
        )

"""demo_vault's plug-ins: its account migrator (v1 to v2) and its pause switch.

Registered under ``demo_vault`` when this module is imported; ``programs.plugin``
imports it the first time a migrator or pauser is looked up by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from solana.rpc.models import MemcmpOpts
from solders.instruction import Instruction
from solders.pubkey import Pubkey

from core.base58 import b58encode
from programs.demo_vault import client as vault
from programs.plugin import (
    AccountMigrator,
    ProgramPauser,
    RpcFilter,
    register,
    register_pauser,
)


@register
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


@register_pauser
class DemoVaultPauser(ProgramPauser):
    """demo_vault's ``Config``: paused refuses deposits (VaultError.Paused)."""

    kind = "demo_vault"

    def is_paused(self, data: bytes) -> bool:
        return vault.Config.decode(data).paused

    def pause(self, admin: Pubkey) -> Instruction:
        return vault.pause(self.program_id, self.account, admin)

    def unpause(self, admin: Pubkey) -> Instruction:
        return vault.unpause(self.program_id, self.account, admin)


__all__ = ["DemoVaultMigrator", "DemoVaultPauser"]

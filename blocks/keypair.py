"""A Solana keypair held as a secret (fee payer, keypair-backend upgrade authority)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from solders.keypair import Keypair

from core.keys import keypair_from_json, keypair_to_json


class SolanaKeypair(Block):
    """A keypair in the Solana CLI's JSON format, stored encrypted by Prefect."""

    _block_type_name = "Solana Keypair"
    _block_type_slug = "solana-keypair"
    _description = "A Solana keypair (JSON array of 64 integers), kept secret."

    secret_key: SecretStr = Field(
        title="Secret key",
        description="The content of a keypair file written by `solana-keygen new`.",
    )

    def keypair(self) -> Keypair:
        return keypair_from_json(self.secret_key.get_secret_value(), what="keypair block")

    @classmethod
    def from_keypair(cls, keypair: Keypair) -> SolanaKeypair:
        return cls(secret_key=SecretStr(keypair_to_json(keypair)))

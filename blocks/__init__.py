"""Prefect Block types: the configuration a runbook loads by name.

``BLOCK_TYPES`` lists every block type of the project; ``register_block_types`` makes
them all creatable in the Prefect UI (Blocks > +), as `make up` does on start.
``load_block`` is how flows load one: a missing block is a ``BlockNotFound`` naming
the block, its type and how to create it.
"""

from prefect.blocks.core import Block

from blocks._load import load_block, preload
from blocks.cluster import SolanaCluster
from blocks.database import RecordsDatabase
from blocks.keypair import SolanaKeypair
from blocks.multisig import MultisigPolicy
from blocks.program_pause import ProgramPause
from blocks.programs import ManagedPrograms
from blocks.slack import SlackChannel

BLOCK_TYPES: tuple[type[Block], ...] = (
    SolanaCluster,
    MultisigPolicy,
    SolanaKeypair,
    ManagedPrograms,
    ProgramPause,
    RecordsDatabase,
    SlackChannel,
)


async def register_block_types() -> list[str]:
    """Register every block type and its schema with the Prefect API (idempotent);
    returns their slugs."""
    for block_type in BLOCK_TYPES:
        await block_type.aregister_type_and_schema()
    return [b.get_block_type_slug() for b in BLOCK_TYPES]


__all__ = [
    "BLOCK_TYPES",
    "ManagedPrograms",
    "MultisigPolicy",
    "ProgramPause",
    "RecordsDatabase",
    "SlackChannel",
    "SolanaCluster",
    "SolanaKeypair",
    "load_block",
    "preload",
    "register_block_types",
]

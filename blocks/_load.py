"""Loading a block by name, with an error that says which block, of which type, and how
to create it (Prefect's own is ``ValueError: Unable to find block document ...``)."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from pydantic import ValidationError

from core.errors import BlockNotFound, InputError

B = TypeVar("B", bound=Block)

_MISSING = "Unable to find block document"


async def load_block(block_type: type[B], name: str) -> B:
    """The saved ``block_type`` block called ``name``; ``BlockNotFound`` when there is none."""
    type_name = block_type.get_block_type_name()
    if not (name or "").strip():
        raise BlockNotFound(
            f"no {type_name} block given: the block name is empty; give the name of a "
            f"{type_name} block (Blocks in the Prefect UI lists them)"
        )
    try:
        return await block_type.aload(name)
    except ValidationError as exc:
        # Name the fields, never their values: a block may hold a secret.
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(block)'}: {e['msg']}" for e in exc.errors()
        )
        raise BlockNotFound(
            f"{type_name} block {name!r} does not load ({fields}); fix it in the Prefect UI "
            f"(Blocks > {name}) and run again"
        ) from None
    except ValueError as exc:
        if _MISSING not in str(exc):
            raise
        raise BlockNotFound(
            f"no {type_name} block named {name!r} on this Prefect server. Create it in the "
            f"Prefect UI (Blocks > + > {type_name}, name it {name}) or in Python with "
            f"`{block_type.__name__}(...).save({name!r})`, or pass the name of an existing "
            f"{type_name} block"
        ) from None


async def preload(*wanted: tuple[str, type[Block], str | None]) -> None:
    """Load every block a run will use, each named by its parameter, before the run
    records or sends anything: a missing fee payer found after the proposal was recorded
    leaves a proposal nobody can finish. ``(parameter, block type, name)``; a name of
    None is an optional block not given. Keypair blocks must hold a keypair."""
    from blocks.keypair import SolanaKeypair  # the keypair block imports nothing of ours

    for parameter, block_type, name in wanted:
        if name is None:
            continue
        try:
            block = await load_block(block_type, name)
            if isinstance(block, SolanaKeypair):
                block.keypair()
        except InputError as exc:
            raise BlockNotFound(f"{parameter}: {exc}") from None

"""Every block type of the project can be created in the UI once `make up` has registered
them, and a missing block is a clear error naming it, its type and how to create it."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
import uuid
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from solders.keypair import Keypair
from solders.pubkey import Pubkey

import blocks
from blocks import (
    BLOCK_TYPES,
    ProgramPause,
    RecordsDatabase,
    SlackChannel,
    SolanaCluster,
    load_block,
    register_block_types,
)
from core.errors import BlockNotFound
from core.keys import keypair_to_json
from flows.backup import restore_backup


def block_classes_in_package() -> set[type[Block]]:
    """Every Block subclass defined in a module of blocks/."""
    found: set[type[Block]] = set()
    for info in pkgutil.iter_modules(blocks.__path__):
        module = importlib.import_module(f"blocks.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Block) and obj.__module__ == module.__name__:
                found.add(obj)
    return found


def test_every_block_class_is_exported_and_listed() -> None:
    classes = block_classes_in_package()
    assert len(classes) >= 7
    assert classes == set(BLOCK_TYPES)
    assert {c.__name__ for c in classes} <= set(blocks.__all__)


async def test_make_up_registers_every_block_type(prefect_api: None) -> None:
    slugs = [b.get_block_type_slug() for b in BLOCK_TYPES]
    async with get_client() as client:
        # Start from a server that knows none of them (other tests' saves register some).
        for slug in slugs:
            with contextlib.suppress(ObjectNotFound):
                await client.delete_block_type((await client.read_block_type_by_slug(slug)).id)
        for slug in slugs:
            with pytest.raises(ObjectNotFound):
                await client.read_block_type_by_slug(slug)

        assert sorted(await register_block_types()) == sorted(slugs)

        for block_class in BLOCK_TYPES:
            block_type = await client.read_block_type_by_slug(block_class.get_block_type_slug())
            assert block_type.name == block_class.get_block_type_name()
            schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
            # The UI's create form is built from this schema: every field is in it.
            assert schema is not None
            assert set(block_class.model_fields) <= set(schema.fields["properties"])
    assert await register_block_types() == slugs  # idempotent, as every `make up` runs it


async def test_the_ui_form_creates_the_blocks_the_runbooks_load(prefect_api: None) -> None:
    """What the UI's create form sends for the three types once missing from it: the
    registered type and schema, the fields as typed in. The runbooks load them by name."""
    admin = Keypair()
    program, config = str(Pubkey.new_unique()), str(Pubkey.new_unique())
    typed_in: dict[type[Block], dict[str, str]] = {
        SlackChannel: {"bot_token": "xoxb-ui-typed", "channel": "#ops-upgrades"},
        RecordsDatabase: {"url": "sqlite:///restore-target.db"},
        ProgramPause: {
            "kind": "demo_vault",
            "program_id": program,
            "pause_account": config,
            "admin_secret": keypair_to_json(admin),
        },
    }
    await register_block_types()
    async with get_client() as client:
        for block_class, data in typed_in.items():
            block_type = await client.read_block_type_by_slug(block_class.get_block_type_slug())
            schema = await client.get_most_recent_block_schema_for_block_type(block_type.id)
            assert schema is not None
            name = f"ui-{uuid.uuid4().hex[:10]}"
            created = await client._client.post(
                "/block_documents/",
                json={
                    "name": name,
                    "block_type_id": str(block_type.id),
                    "block_schema_id": str(schema.id),
                    "data": data,
                },
            )
            assert created.status_code == 201, created.text
            loaded = await load_block(block_class, name)
            for field, value in data.items():
                got = getattr(loaded, field)
                got = got.get_secret_value() if hasattr(got, "get_secret_value") else got
                assert got == value, (block_class.__name__, field)
            if isinstance(loaded, ProgramPause):
                assert loaded.admin().pubkey() == admin.pubkey()
                assert str(loaded.pauser().program_id) == program


async def test_restore_into_a_missing_records_database_block_names_it(
    prefect_api: None, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    with pytest.raises(BlockNotFound) as missing:
        await restore_backup(target_block="no-such-target-db", backup_dir=str(backups))
    text = str(missing.value)
    assert "no Runbook Records Database block named 'no-such-target-db'" in text
    assert "Blocks > + > Runbook Records Database" in text
    assert "RecordsDatabase(...).save('no-such-target-db')" in text
    assert "Unable to find block document" not in text
    assert not backups.exists()  # nothing read or written
    assert isinstance(missing.value, ValueError)  # callers tolerating a missing block still do


async def test_load_block_names_an_empty_name_and_loads_a_saved_block(prefect_api: None) -> None:
    with pytest.raises(BlockNotFound, match="no Solana Cluster block given: the block name is"):
        await load_block(SolanaCluster, " ")
    await SolanaCluster(cluster="devnet", rpc_urls=["http://127.0.0.1:1"]).asave(
        "t-load-block", overwrite=True
    )
    loaded = await load_block(SolanaCluster, "t-load-block")
    assert loaded.cluster == "devnet"
    with pytest.raises(BlockNotFound, match="no Runbook Records Database block named 't-load-bl"):
        await load_block(RecordsDatabase, "t-load-block")  # same name, other type

"""Flow fixtures: a localnet with demo_vault v1 (cluster-like when a test parametrizes
``behaviour``, see cluster_like.py), the blocks the flows load, and a records database
(SQLite and PostgreSQL). The sign-off driver is in flow_driver.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Engine

from localnet.cluster_mode import ClusterBehaviour
from runbooks.demo import DemoChain, save_blocks, start_demo_chain
from tasks.records import records_engine


@pytest.fixture
def behaviour() -> ClusterBehaviour | None:
    """The localnet's behaviour: instant unless a test parametrizes ``behaviour``
    (cluster_like.CLUSTER)."""
    return None


@pytest.fixture
def chain(
    demo_binaries: dict[str, bytes], behaviour: ClusterBehaviour | None
) -> Iterator[DemoChain]:
    chain = start_demo_chain(binaries=demo_binaries, behaviour=behaviour)
    yield chain
    chain.server.stop()


@pytest.fixture
async def block_names(prefect_api: None, chain: DemoChain) -> dict[str, str]:
    return await save_blocks(chain, prefix=f"t-{uuid.uuid4().hex[:10]}", timelock_seconds=2)


@pytest.fixture
def records_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The records database the flows write to in this test (``DATABASE_URL``)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


@pytest.fixture
async def v2_buffer(chain: DemoChain) -> AsyncIterator[str]:
    from runbooks.demo import write_buffer

    yield str(await write_buffer(chain, chain.binaries["v2"]))

"""Migration 0005_cluster_genesis: proposals keep their cluster's genesis hash; one
recorded before it has none and cannot be signed any more (its line refuses to form)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from core.errors import InputError
from flows._signoff import approval_subject
from store.db import alembic_config, create_engine, migrate
from store.records import proposals

GENESIS = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"


def test_a_proposal_from_before_keeps_no_genesis_and_cannot_be_signed(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "slack_0004")
    command.upgrade(cfg, "timelock_0004")
    engine = create_engine(db_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("proposals")}
        assert "genesis_hash" not in columns
        row = {
            "key": "before-0005", "kind": "upgrade", "cluster": "mainnet", "backend": "keypair",
            "governance": "ops", "program_id": "P", "buffer": "B", "buffer_hash": "ab" * 32,
            "description": "d", "proposer": "alice", "members": ["A", "B", "C"],
            "threshold": 2, "timelock_seconds": 0, "status": "proposed",
            "created_at": datetime.now(UTC),
        }  # fmt: skip
        table = sa.Table("proposals", sa.MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            old_id = conn.execute(sa.insert(table).values(**row)).inserted_primary_key[0]
        migrate(engine)
        old = proposals.get_proposal(engine, old_id)
        assert old is not None and old.genesis_hash is None
        try:
            approval_subject(old).message()
        except InputError as exc:
            assert "genesis hash; this proposal has none recorded" in str(exc)
        else:
            raise AssertionError("a proposal without a genesis hash formed a line")

        new = proposals.record_proposal(
            engine, key="after-0005", kind="upgrade", cluster="mainnet", backend="keypair",
            governance="ops", program_id="P", buffer="B", buffer_hash="ab" * 32,
            description="d", proposer="alice", members=["A", "B", "C"], threshold=2,
            timelock_seconds=0, genesis_hash=GENESIS,
        )  # fmt: skip
        assert proposals.get_proposal(engine, new.id).genesis_hash == GENESIS  # type: ignore[union-attr]
        assert f"cluster: {GENESIS}; governance: ops; proposal: {new.id};" in (
            approval_subject(new).message()
        )
        command.downgrade(cfg, "slack_0004")
    finally:
        engine.dispose()

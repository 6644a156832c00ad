"""The write-ahead journal's rows (store.records.transactions) on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, func, select

from core.errors import InputError
from store.models import ChainTransaction
from store.records import transactions


@dataclass(frozen=True)
class Wire:
    signature: str
    wire: str
    last_valid_block_height: int


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ChainTransaction)).scalar_one())


def test_write_ahead_then_settle(engine: Engine) -> None:
    batch = [Wire(f"sig{i}", f"d2lyZQ{i}", 100 + i) for i in range(3)]
    transactions.write_ahead(
        engine, "migrate:7", batch, details={"accounts": ["a", "b"]}, flow_run_id="run-1"
    )
    assert [r.signature for r in transactions.unsettled(engine, "migrate:7")] == [
        "sig0",
        "sig1",
        "sig2",
    ]
    transactions.settle(engine, "sig0", "landed")
    transactions.settle(engine, "sig1", "expired", "not seen by block height 101")
    # Settled once: a racing attempt's later verdict changes nothing.
    transactions.settle(engine, "sig0", "failed", "late")
    rows = {r.signature: r for r in transactions.transactions(engine, "migrate:7")}
    assert rows["sig0"].status == "landed" and rows["sig0"].error is None
    assert rows["sig0"].settled_at is not None
    assert rows["sig1"].status == "expired"
    assert rows["sig2"].status == "sent" and rows["sig2"].settled_at is None
    assert rows["sig2"].details == {"accounts": ["a", "b"]}
    assert rows["sig2"].flow_run_id == "run-1"
    assert [r.signature for r in transactions.unsettled(engine, "migrate:7")] == ["sig2"]
    assert transactions.transactions(engine, "migrate:8") == []
    assert [r.purpose for r in transactions.transactions_like(engine, "migrate:")] == [
        "migrate:7"
    ] * 3


def test_bad_input_writes_nothing(engine: Engine) -> None:
    with pytest.raises(InputError, match="purpose must not be empty"):
        transactions.write_ahead(engine, " ", [Wire("s", "w", 1)])
    with pytest.raises(InputError, match="longer than 200"):
        transactions.write_ahead(engine, "x" * 201, [Wire("s", "w", 1)])
    with pytest.raises(InputError, match="status must be one of landed"):
        transactions.settle(engine, "s", "sent")
    two = [Wire("s1", "w", 1), Wire("s2", "w", 1)]
    with pytest.raises(InputError, match="details_each has 1 entries for 2 transactions"):
        transactions.write_ahead(engine, "migrate:1", two, details_each=[{"accounts": ["a"]}])
    with pytest.raises(InputError, match="details or details_each, not both"):
        transactions.write_ahead(engine, "migrate:1", two, details={"a": 1}, details_each=[{}, {}])
    assert _count(engine) == 0


def test_details_each_go_with_their_own_rows(engine: Engine) -> None:
    batch = [Wire("s1", "w1", 1), Wire("s2", "w2", 1)]
    transactions.write_ahead(
        engine, "migrate:3", batch, details_each=[{"accounts": ["a", "b"]}, {"accounts": ["c"]}]
    )
    rows = transactions.transactions(engine, "migrate:3")
    assert [(r.signature, r.details) for r in rows] == [
        ("s1", {"accounts": ["a", "b"]}),
        ("s2", {"accounts": ["c"]}),
    ]

"""The migration's view of the write-ahead journal (tasks.migration.MigrationJournal): each
transaction's row names its accounts; a batch settles and reads only the rows that cover
its own accounts."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from core.errors import InputError
from programs.send import Signed
from store.records import transactions
from tasks.migration import MigrationJournal, migration_purpose
from tasks.records import records_engine


@pytest.fixture
def records(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return records_engine()


def signed(name: str) -> Signed:
    return Signed(name, "d2lyZQ==", 100)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_row_names_its_chunk_and_a_batch_sees_only_its_accounts(records: Engine) -> None:
    first = MigrationJournal(7, ["a", "b", "c"])
    first.covering([["a", "b"], ["c"]]).write_ahead([signed("s1"), signed("s2")])
    other = MigrationJournal(7, ["x"])
    other.covering([["x"]]).write_ahead([signed("s3")])
    rows = transactions.transactions(records, migration_purpose(7))
    assert [(r.signature, r.details) for r in rows] == [
        ("s1", {"accounts": ["a", "b"]}),
        ("s2", {"accounts": ["c"]}),
        ("s3", {"accounts": ["x"]}),
    ]
    # A batch of a rerun, cut differently, settles what covers any of its accounts.
    rerun = MigrationJournal(7, ["b", "x"])
    assert [s.signature for s in rerun.unsettled()] == ["s1", "s3"]
    assert [s.signature for s in MigrationJournal(7, ["c"]).unsettled()] == ["s2"]
    assert MigrationJournal(8, ["a"]).unsettled() == []  # another migration's journal

    first.settle("s1", "landed")
    first.settle("s2", "expired", "not seen by block height 100")
    other.settle("s3", "failed", "transaction failed")
    # Only a landed transaction migrated its accounts; only this batch's are named.
    assert first.landed_signatures() == {"a": "s1", "b": "s1"}
    assert rerun.landed_signatures() == {"b": "s1"}
    assert other.landed_signatures() == {}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_write_ahead_without_its_chunks_is_refused_and_writes_nothing(
    records: Engine,
) -> None:
    journal = MigrationJournal(7, ["a", "b"]).covering([["a"], ["b"]])
    with pytest.raises(InputError, match="details_each has 2 entries for 1 transactions"):
        journal.write_ahead([signed("s1")])
    assert transactions.transactions(records, migration_purpose(7)) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rows_with_no_accounts_are_nobody_s(records: Engine) -> None:
    # A row of the purpose written by another path (no accounts, or a malformed list)
    # covers no account: it is neither settled nor credited by a batch.
    purpose = migration_purpose(9)
    transactions.write_ahead(records, purpose, [signed("n1")], details={"accounts": "a"})
    transactions.write_ahead(records, purpose, [signed("n2")])
    transactions.settle(records, "n2", "landed")
    journal = MigrationJournal(9, ["a"])
    assert journal.unsettled() == []
    assert journal.landed_signatures() == {}

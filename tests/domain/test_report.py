"""The shared report pieces render what the artifacts and forms show."""

from __future__ import annotations

from domain.report import fields_table, linked


def test_fields_table_is_a_two_column_markdown_table() -> None:
    assert fields_table([("Cluster", "devnet"), ("Approvals", 3)]) == [
        "| | |",
        "|---|---|",
        "| Cluster | devnet |",
        "| Approvals | 3 |",
    ]
    assert fields_table([("users", 2)], header=("table", "rows")) == [
        "| table | rows |",
        "|---|---|",
        "| users | 2 |",
    ]


def test_linked_adds_the_explorer_link_only_when_there_is_one() -> None:
    assert linked("Prog1", "https://x/Prog1") == "`Prog1` ([explorer](https://x/Prog1))"
    assert linked("Prog1", None) == "`Prog1`"

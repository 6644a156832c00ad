"""The health check's Squads judgements: the config digest and stuck proposals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from domain import health
from programs.squads import client as squads

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(hours=24)
ADDRESS = str(Keypair().pubkey())


def multisig(**changes: object) -> squads.Multisig:
    base = squads.Multisig(
        create_key=Keypair().pubkey(),
        config_authority=Pubkey.default(),
        threshold=2,
        time_lock=3600,
        transaction_index=5,
        stale_transaction_index=0,
        rent_collector=None,
        bump=255,
        members=tuple(squads.Member(Keypair().pubkey(), 7) for _ in range(3)),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def proposal(index: int, kind: str, at: datetime | None) -> squads.Proposal:
    stamp = None if at is None else int(at.timestamp())
    status = squads.ProposalStatus(kind, stamp)
    return squads.Proposal(Keypair().pubkey(), index, status, 255, (), (), ())


def test_the_digest_covers_the_config_and_nothing_else() -> None:
    ms = multisig()
    digest = health.squads_config_digest(ms)
    # Counters move with every proposal, and the members' order means nothing.
    same = replace(
        ms, transaction_index=99, stale_transaction_index=3, members=ms.members[::-1], bump=1
    )
    assert health.squads_config_digest(same) == digest
    other = Keypair().pubkey()
    changed = [
        replace(ms, threshold=3),
        replace(ms, time_lock=0),
        replace(ms, config_authority=other),
        replace(ms, rent_collector=other),
        replace(ms, members=ms.members[:2]),
        replace(ms, members=(replace(ms.members[0], permissions=5), *ms.members[1:])),
        replace(ms, members=(*ms.members[:2], squads.Member(other, 7))),
    ]
    digests = {health.squads_config_digest(m) for m in changed}
    assert digest not in digests and len(digests) == len(changed)


def test_config_baseline_unchanged_and_changed() -> None:
    ms = multisig()
    first = health.check_squads_config(ADDRESS, ms, None)
    assert first.level == "info" and "baseline" in first.message
    assert first.row()["digest"] == health.squads_config_digest(ms)
    again = health.check_squads_config(ADDRESS, ms, first.digest)
    assert again.level == "info" and "unchanged" in again.message
    changed = health.check_squads_config(ADDRESS, replace(ms, threshold=1), first.digest)
    assert changed.level == "warning" and "changed since the last health run" in changed.message
    assert "1 of 3" in changed.message
    # A row without a digest keeps the table's four columns.
    assert "digest" not in health.Finding("a", "b", "info", "c").row()


def test_the_previous_digest_is_the_newest_recorded_one() -> None:
    row = {"check": health.SQUADS_CONFIG_CHECK, "subject": ADDRESS, "digest": "new"}
    older = {**row, "digest": "old"}
    other = {**row, "subject": "elsewhere", "digest": "x"}
    reports = [[{"check": "rpc", "subject": "c"}], [other, row], [older]]
    assert health.previous_squads_digest(reports, ADDRESS) == "new"
    assert health.previous_squads_digest([[other]], ADDRESS) is None


@pytest.mark.parametrize(
    ("kind", "age", "stuck"),
    [
        ("Active", DAY - timedelta(minutes=1), False),
        ("Active", DAY + timedelta(minutes=1), True),
        # Approved: stuck only once time lock (1 h) + the window have passed.
        ("Approved", DAY + timedelta(minutes=30), False),
        ("Approved", DAY + timedelta(hours=1, minutes=1), True),
        ("Executed", 30 * DAY, False),
        ("Rejected", 30 * DAY, False),
        ("Cancelled", 30 * DAY, False),
        ("Draft", 30 * DAY, False),
    ],
)
def test_stuck_proposals(kind: str, age: timedelta, stuck: bool) -> None:
    found = health.check_squads_proposals(
        ADDRESS, multisig(), {4: proposal(4, kind, NOW - age), 5: None}, NOW, DAY
    )
    if stuck:
        (f,) = found
        assert f.level == "warning" and f.subject == f"{ADDRESS} proposal 4"
        assert ("Active for" if kind == "Active" else "still not executed") in f.message
    else:
        assert [f.level for f in found] == ["info"] and "none stuck" in found[0].message


def test_an_executing_proposal_has_no_timestamp_and_is_not_judged() -> None:
    found = health.check_squads_proposals(
        ADDRESS, multisig(), {1: proposal(1, "Executing", None)}, NOW, DAY
    )
    assert [f.level for f in found] == ["info"]

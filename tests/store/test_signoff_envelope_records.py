"""Which off-chain envelope each sign-off was signed in (Alembic 0005), on SQLite and
PostgreSQL: kept for accepted sign-offs, none for refusals and for rows from before."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from core.errors import InputError
from store.db import alembic_config, create_engine, migrate
from store.models import Approval, AuditEvent
from store.records import audit as audit_records
from store.records import proposals as proposals_records
from store.records.proposals import proposal_subject
from tests.store.test_store_records import MEMBERS, count, propose


def test_accepted_signoffs_keep_their_envelope(engine: Engine) -> None:
    p = propose(engine)
    standard = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[0], decision="approve", accepted=True, envelope="standard"
    )
    legacy = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[1], decision="approve", accepted=True, envelope="legacy"
    )
    refused = proposals_records.record_approval(
        engine, p.id, member=MEMBERS[2], decision="approve", accepted=False, reason="not theirs"
    )
    assert [a.envelope for a in proposals_records.approvals(engine, p.id)] == [
        "standard",
        "legacy",
        None,
    ]
    assert (standard.envelope, legacy.envelope, refused.envelope) == ("standard", "legacy", None)
    events = audit_records.audit_events(engine, proposal_subject(p.id))
    assert [e.details.get("envelope") for e in events[1:]] == ["standard", "legacy", None]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"accepted": True, "envelope": "v1"}, "envelope must be one of standard, legacy"),
        ({"accepted": True, "envelope": ""}, "envelope must be one of"),
        ({"accepted": False, "reason": "bad", "envelope": "standard"}, "refused approval has no"),
    ],
)
def test_an_unknown_envelope_or_one_on_a_refusal_is_refused_and_nothing_written(
    engine: Engine, fields: dict[str, object], error: str
) -> None:
    p = propose(engine)
    before = count(engine, Approval), count(engine, AuditEvent)
    with pytest.raises(InputError, match=error):
        proposals_records.record_approval(
            engine,
            p.id,
            member=MEMBERS[0],
            decision="approve",
            **fields,  # type: ignore[arg-type]
        )
    assert (count(engine, Approval), count(engine, AuditEvent)) == before


def test_rows_from_before_the_envelope_was_kept_read_back_as_none(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "slack_0004")
    command.upgrade(cfg, "timelock_0004")
    engine = create_engine(db_url)
    try:
        assert "envelope" not in {c["name"] for c in sa.inspect(engine).get_columns("approvals")}
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO proposals (key, kind, cluster, backend, governance, program_id,"
                    " description, proposer, members, threshold, timelock_seconds, status,"
                    " created_at) VALUES ('k', 'upgrade', 'localnet', 'keypair', 'ops', 'P',"
                    " 'd', 'alice', '[]', 1, 0, 'proposed', '2026-01-01 00:00:00')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO approvals (proposal_id, member, decision, accepted,"
                    " created_at) VALUES (1, :m, 'approve', :yes, '2026-01-01 00:00:00')"
                ),
                {"m": MEMBERS[0], "yes": True},
            )
        migrate(engine)
        [old] = proposals_records.approvals(engine, 1)
        assert old.accepted and old.envelope is None
        # And back: the downgrade drops the column, the row stays.
        command.downgrade(cfg, "slack_0004")
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM approvals")) == 1
        assert "envelope" not in {c["name"] for c in sa.inspect(engine).get_columns("approvals")}
    finally:
        engine.dispose()

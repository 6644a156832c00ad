"""Records of the Slack thread each proposal opens: later events reply to it, and its
opening message is updated as sign-offs arrive."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from store.db import session_scope
from store.models import SlackThread
from store.records._base import DEFAULT_ACTOR, Record, _text, insert_once
from store.records.proposals import lock_proposal, proposal_subject


class SlackThreadRecord(Record):
    proposal_id: int
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    created_at: datetime


def record_slack_thread(
    engine: Engine,
    proposal_id: int,
    *,
    channel: str,
    ts: str,
    text: str,
    blocks: Sequence[Mapping[str, Any]],
    actor: str = DEFAULT_ACTOR,
    flow_run_id: str | None = None,
) -> SlackThreadRecord:
    """Remember the message that opened ``proposal_id``'s Slack thread; idempotent.

    The first thread recorded wins: a second call (a retry, a racing run) returns it.
    Audit: ``proposal.slack_thread``.
    """
    fields = {"channel": _text("channel", channel), "ts": _text("ts", ts), "text": text}

    def find(session: Session) -> SlackThread | None:
        lock_proposal(session, engine, proposal_id)
        return session.get(SlackThread, proposal_id)

    return insert_once(
        engine,
        SlackThreadRecord,
        find=find,
        new=lambda: SlackThread(
            proposal_id=proposal_id,
            blocks=json.loads(json.dumps(list(blocks))),
            flow_run_id=flow_run_id,
            **fields,
        ),
        audit=lambda thread: {
            "actor": actor,
            "action": "proposal.slack_thread",
            "subject": proposal_subject(proposal_id),
            "details": {"channel": fields["channel"], "ts": fields["ts"]},
            "flow_run_id": flow_run_id,
        },
        what=f"the Slack thread of proposal {proposal_id}",
    )


def get_slack_thread(engine: Engine, proposal_id: int) -> SlackThreadRecord | None:
    """The Slack thread of a proposal, or None when none was opened."""
    with session_scope(engine) as session:
        thread = session.get(SlackThread, proposal_id)
        return None if thread is None else SlackThreadRecord.model_validate(thread)

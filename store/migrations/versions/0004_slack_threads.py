"""Slack threads: the message that opened each proposal's thread (channel id and ts).

The ``slack`` branch, from the initial schema; it only adds a table of its own.

Revision ID: slack_0004
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.models

revision: str = "slack_0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("slack",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_threads",
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("blocks", sa.JSON(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_slack_threads_proposal_id_proposals"),
        ),
        sa.PrimaryKeyConstraint("proposal_id", name=op.f("pk_slack_threads")),
    )


def downgrade() -> None:
    op.drop_table("slack_threads")

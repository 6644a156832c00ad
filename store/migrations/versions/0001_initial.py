"""Initial records schema: proposals, approvals, executions, audit events, program hashes.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("backend", sa.String(), nullable=False),
        sa.Column("governance", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("buffer", sa.String(), nullable=True),
        sa.Column("buffer_hash", sa.String(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("proposer", sa.String(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("timelock_seconds", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("threshold_met_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("executed_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("onchain_address", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
        sa.UniqueConstraint("key", name=op.f("uq_proposals_key")),
    )
    op.create_index(op.f("ix_proposals_status"), "proposals", ["status"], unique=False)

    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("member", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("signature", sa.String(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_approvals_proposal_id_proposals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_proposal_id"), "approvals", ["proposal_id"], unique=False)
    # One accepted approval per (proposal, member); refused attempts may repeat.
    op.create_index(
        "uq_approvals_accepted_member",
        "approvals",
        ["proposal_id", "member"],
        unique=True,
        sqlite_where=sa.column("accepted") == sa.true(),
        postgresql_where=sa.column("accepted") == sa.true(),
    )

    op.create_table(
        "executions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(), nullable=True),
        sa.Column("old_hash", sa.String(), nullable=True),
        sa.Column("new_hash", sa.String(), nullable=True),
        sa.Column("slot_before", sa.BigInteger(), nullable=True),
        sa.Column("slot_after", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["proposals.id"],
            name=op.f("fk_executions_proposal_id_proposals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint("proposal_id", name=op.f("uq_executions_proposal_id")),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", store.models.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"], unique=False)
    op.create_index(op.f("ix_audit_events_subject"), "audit_events", ["subject"], unique=False)

    op.create_table(
        "program_hashes",
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("cluster", "program_id", name=op.f("pk_program_hashes")),
    )


def downgrade() -> None:
    op.drop_table("program_hashes")
    op.drop_index(op.f("ix_audit_events_subject"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("executions")
    op.drop_index("uq_approvals_accepted_member", table_name="approvals")
    op.drop_index(op.f("ix_approvals_proposal_id"), table_name="approvals")
    op.drop_table("approvals")
    op.drop_index(op.f("ix_proposals_status"), table_name="proposals")
    op.drop_table("proposals")

"""Scheduled operations: health reports, backups, key registry, key rotations, archive.

The ``operations`` branch, from the initial schema; it only adds tables of its own.

Revision ID: 0003
Revises: 0001
Create Date: 2025-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.models

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("operations",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "health_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("at", store.models.UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.Column("acknowledged_by", sa.String(), nullable=True),
        sa.Column("acknowledged_at", store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_reports")),
        sa.UniqueConstraint("flow_run_id", name=op.f("uq_health_reports_flow_run_id")),
    )
    op.create_index(op.f("ix_health_reports_at"), "health_reports", ["at"], unique=False)

    op.create_table(
        "managed_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("pubkey", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("programs", sa.JSON(), nullable=False),
        sa.Column("rotated_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("retired_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("registered_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_keys")),
        sa.UniqueConstraint("cluster", "pubkey", name=op.f("uq_managed_keys_cluster_pubkey")),
    )

    op.create_table(
        "key_rotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("old_authority", sa.String(), nullable=False),
        sa.Column("new_authority", sa.String(), nullable=True),
        sa.Column("proposal_id", sa.Integer(), nullable=True),
        sa.Column("signature", sa.String(), nullable=True),
        sa.Column("slot", sa.BigInteger(), nullable=True),
        sa.Column("at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_rotations")),
        sa.UniqueConstraint("proposal_id", name=op.f("uq_key_rotations_proposal_id")),
    )
    op.create_index(
        op.f("ix_key_rotations_program_id"), "key_rotations", ["program_id"], unique=False
    )

    op.create_table(
        "backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("backend", sa.String(), nullable=False),
        sa.Column("records_file", sa.String(), nullable=False),
        sa.Column("records_sha256", sa.String(), nullable=False),
        sa.Column("table_counts", sa.JSON(), nullable=False),
        sa.Column("programs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("verified_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("removed_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
        sa.UniqueConstraint("name", name=op.f("uq_backups_name")),
    )
    op.create_index(op.f("ix_backups_status"), "backups", ["status"], unique=False)

    op.create_table(
        "archived_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_table", sa.String(), nullable=False),
        sa.Column("source_key", sa.String(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("archived_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archived_records")),
    )
    op.create_index(
        op.f("ix_archived_records_source_table"),
        "archived_records",
        ["source_table"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_archived_records_source_table"), table_name="archived_records")
    op.drop_table("archived_records")
    op.drop_index(op.f("ix_backups_status"), table_name="backups")
    op.drop_table("backups")
    op.drop_index(op.f("ix_key_rotations_program_id"), table_name="key_rotations")
    op.drop_table("key_rotations")
    op.drop_table("managed_keys")
    op.drop_index(op.f("ix_health_reports_at"), table_name="health_reports")
    op.drop_table("health_reports")

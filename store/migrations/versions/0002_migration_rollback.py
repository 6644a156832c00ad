"""Account migration, program archives and the kill switch.

The ``migration`` branch, from the initial schema; it only adds tables of its own
(models in ``store/models/``).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("migration",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migration_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("migrator", sa.String(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("program_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_runs")),
        sa.UniqueConstraint("key", name=op.f("uq_migration_runs_key")),
    )
    op.create_index(
        op.f("ix_migration_runs_program_id"), "migration_runs", ["program_id"], unique=False
    )

    op.create_table(
        "migration_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.LargeBinary(), nullable=False),
        sa.Column("snapshot_sha256", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("signature", sa.String(), nullable=True),
        sa.Column("created_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("migrated_at", store.models.UTCDateTime(), nullable=True),
        sa.Column("verified_at", store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migration_runs.id"],
            name=op.f("fk_migration_accounts_migration_id_migration_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_accounts")),
        sa.UniqueConstraint(
            "migration_id", "address", name=op.f("uq_migration_accounts_migration_id_address")
        ),
    )
    op.create_index(
        "ix_migration_accounts_migration_id_status",
        "migration_accounts",
        ["migration_id", "status"],
        unique=False,
    )

    op.create_table(
        "program_archives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("authority", sa.String(), nullable=True),
        sa.Column("archived_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("last_archived_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_program_archives")),
        sa.UniqueConstraint(
            "cluster",
            "program_id",
            "sha256",
            name=op.f("uq_program_archives_cluster_program_id_sha256"),
        ),
    )

    op.create_table(
        "kill_switches",
        sa.Column("cluster", sa.String(), nullable=False),
        sa.Column("program_id", sa.String(), nullable=False),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("changed_at", store.models.UTCDateTime(), nullable=False),
        sa.Column("release_proposal_id", sa.Integer(), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("cluster", "program_id", name=op.f("pk_kill_switches")),
    )


def downgrade() -> None:
    op.drop_table("kill_switches")
    op.drop_table("program_archives")
    op.drop_index("ix_migration_accounts_migration_id_status", table_name="migration_accounts")
    op.drop_table("migration_accounts")
    op.drop_index(op.f("ix_migration_runs_program_id"), table_name="migration_runs")
    op.drop_table("migration_runs")

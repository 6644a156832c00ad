"""Proposals keep their cluster's genesis hash, which the signed approval line names (so
a sign-off given on one cluster never counts on another).

Joins the two 0004 heads. Proposals recorded before have none and cannot be signed
any more: the form says so and a new run proposes again.

Revision ID: 0005_cluster_genesis
Revises: slack_0004, timelock_0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_cluster_genesis"
down_revision: str | Sequence[str] | None = ("slack_0004", "timelock_0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("proposals", sa.Column("genesis_hash", sa.String(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): a batch copy of proposals would drop the table
    # that approvals' foreign keys point at.
    op.drop_column("proposals", "genesis_hash")

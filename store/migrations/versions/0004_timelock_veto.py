"""A member who approved may still cancel: accepted cancels are outside the
one-sign-off-per-member index (a cancel closes the proposal, so there is at most one).

Revision ID: timelock_0004
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "timelock_0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = ("timelock",)
depends_on: str | Sequence[str] | None = None

INDEX = "uq_approvals_accepted_member"


def _create(where: sa.ColumnElement[bool]) -> None:
    op.create_index(
        INDEX,
        "approvals",
        ["proposal_id", "member"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade() -> None:
    op.drop_index(INDEX, table_name="approvals")
    _create(sa.and_(sa.column("accepted") == sa.true(), sa.column("decision") != "cancel"))


def downgrade() -> None:
    op.drop_index(INDEX, table_name="approvals")
    _create(sa.column("accepted") == sa.true())

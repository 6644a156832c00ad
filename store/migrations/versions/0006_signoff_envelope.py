"""Which off-chain envelope each accepted sign-off was signed in: ``standard`` (the
off-chain message v0 of Agave 3.x CLIs, Ledger, @solana/kit) or ``legacy`` (Agave
1.18/2.x CLIs). NULL for refused attempts and for rows recorded before this revision.

Follows 0005_cluster_genesis (which joined the two 0004 heads).

Revision ID: 0006_signoff_envelope
Revises: 0005_cluster_genesis
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_signoff_envelope"
down_revision: str | Sequence[str] | None = "0005_cluster_genesis"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("approvals", sa.Column("envelope", sa.String(), nullable=True))


def downgrade() -> None:
    op.drop_column("approvals", "envelope")

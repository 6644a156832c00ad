"""The write-ahead journal of chain writes (``chain_transactions``): every signed
transaction's signature, wire bytes and last valid block height, recorded before it is
first sent and settled afterwards.

Revision ID: 0007_chain_transactions
Revises: 0006_signoff_envelope
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_chain_transactions"
down_revision: str | Sequence[str] | None = "0006_signoff_envelope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chain_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=88), nullable=False),
        sa.Column("purpose", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("wire", sa.Text(), nullable=False),
        sa.Column("last_valid_block_height", sa.BigInteger(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_run_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_transactions")),
        sa.UniqueConstraint("signature", name=op.f("uq_chain_transactions_signature")),
    )
    op.create_index(
        op.f("ix_chain_transactions_purpose"), "chain_transactions", ["purpose"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_chain_transactions_purpose"), table_name="chain_transactions")
    op.drop_table("chain_transactions")

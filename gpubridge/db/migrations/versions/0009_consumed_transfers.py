"""consumed transfers: one key per credited token transfer, shared by x402 and USDC top-ups

Revision ID: 0009
Revises: 0008

Both paths insert the transfers they credit in the transaction of the credit, so the key
decides which of two concurrent credits of one transfer wins. Transfers credited before this
revision are not copied here (their rows name a transaction, not its logs); the paths still
refuse their hashes by looking up ``x402_payments`` and ``crypto_invoices``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumed_transfers",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("asset", sa.String(length=42), nullable=False),
        sa.Column("sender", sa.String(length=42), nullable=False),
        sa.Column("amount_units", sa.BigInteger(), nullable=False),
        sa.Column("used_for", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_consumed_transfers_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "chain_id", "tx_hash", "log_index", name=op.f("pk_consumed_transfers")
        ),
    )


def downgrade() -> None:
    op.drop_table("consumed_transfers")

"""x402 sign-ins: the sign-in-with-x messages already used

Revision ID: 0012
Revises: 0011

A returning payer signs in with its wallet (the x402 ``sign-in-with-x`` extension) to use its
wallet account's credit without a new payment; each signed message is used once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "x402_sign_ins",
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_x402_sign_ins")),
    )


def downgrade() -> None:
    op.drop_table("x402_sign_ins")

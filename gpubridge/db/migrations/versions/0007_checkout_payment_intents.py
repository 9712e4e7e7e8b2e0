"""card reversals: checkout sessions remember their payment intent, so that refunds and
disputes find the credit, and a balance may go below zero when they take it back

Revision ID: 0007
Revises: 0006

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint(op.f("ck_accounts_balance_not_negative"), type_="check")
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.add_column(sa.Column("payment_intent_id", sa.String(length=255), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_checkout_sessions_payment_intent_id"), ["payment_intent_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("checkout_sessions") as batch:
        batch.drop_constraint(op.f("uq_checkout_sessions_payment_intent_id"), type_="unique")
        batch.drop_column("payment_intent_id")
    with op.batch_alter_table("accounts") as batch:
        batch.create_check_constraint(
            op.f("ck_accounts_balance_not_negative"), sa.text("balance_micros >= 0")
        )

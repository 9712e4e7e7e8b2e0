"""x402 metered payments: the authorized maximum, the job it pays and the signed payload

Revision ID: 0013
Revises: 0012

An ``upto`` payment authorizes a maximum; the job it pays is settled after it ends, for what
the job used. The payment keeps the maximum (``authorized_micros``), its job (``job_id``) and
the payload its payer signed (``document``), which the settlement sends on chain.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("x402_payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("authorized_micros", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("job_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("document", sa.JSON(), nullable=True))
        batch_op.create_index("ix_x402_payments_job", ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("x402_payments", schema=None) as batch_op:
        batch_op.drop_index("ix_x402_payments_job")
        batch_op.drop_column("document")
        batch_op.drop_column("job_id")
        batch_op.drop_column("authorized_micros")

"""x402 requests: settlements pending confirmation and payment identifiers

Revision ID: 0011
Revises: 0010

A settlement whose receipt did not come in time used to fail the request although the
transfer could still land. The request is now kept, with the job id its client was given, until
the chain decides: the job runs once the transfer is confirmed, or the reservation is released.
A payer's payment identifier (the x402 ``payment-identifier`` extension) names its paid
request, so that a paid retry gets the first result.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "x402_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("payment_identifier", sa.String(length=128), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("priority", sa.String(length=8), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["x402_payments.id"],
            name=op.f("fk_x402_requests_payment_id_x402_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_x402_requests")),
        sa.UniqueConstraint("payer", "payment_identifier", name="uq_x402_requests_identifier"),
    )
    op.create_index("ix_x402_requests_status", "x402_requests", ["status"])
    op.create_index("ix_x402_requests_job", "x402_requests", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_x402_requests_job", table_name="x402_requests")
    op.drop_index("ix_x402_requests_status", table_name="x402_requests")
    op.drop_table("x402_requests")

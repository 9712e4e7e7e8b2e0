"""leases: the heartbeat of each gateway replica, which decides whether its running jobs live

Revision ID: 0010
Revises: 0009

Running jobs used to be failed when they had not been updated for a fixed time, which also
failed long healthy jobs on other replicas. A job's liveness is now its holder's lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("info", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("holder", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")

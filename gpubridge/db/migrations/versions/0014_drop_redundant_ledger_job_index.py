"""Drop the ledger's index on job_id alone: its unique (job_id, job_phase) index serves it

Revision ID: 0014
Revises: 0013

Lookups of a job's entries use the unique constraint ``uq_ledger_entries_job_phase``, whose
first column is ``job_id``; ``ix_ledger_job`` only cost every ledger insert one more index
entry, at a random place (job ids are random).
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_job")


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_job", ["job_id"], unique=False)

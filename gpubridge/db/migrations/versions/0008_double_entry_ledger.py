"""double-entry ledger: house accounts balance every movement, one hold, settlement and
release per job

Revision ID: 0008
Revises: 0007

Existing entries get their posting (their own id), their job phase (the first row of each
phase of a job; a second one, which the old schema allowed, keeps none and shows in
``gpubridge ledger check``), and a house row that balances them: captures against revenue,
grants against grants, x402 payments against x402, card top-ups and reversals against card,
USDC top-ups against usdc.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_HOUSE_OF = """
CASE
    WHEN kind = 'capture' THEN 'revenue'
    WHEN kind = 'x402' THEN 'x402'
    WHEN kind = 'reversal' THEN 'card'
    WHEN kind = 'topup' AND reference LIKE 'stripe:%' THEN 'card'
    WHEN kind = 'topup' AND reference LIKE 'usdc:%' THEN 'usdc'
    ELSE 'grants'
END
"""
_PHASE_OF = """
CASE kind
    WHEN 'hold' THEN 'hold'
    WHEN 'capture' THEN 'settle'
    WHEN 'refund' THEN 'settle'
    WHEN 'release' THEN 'release'
END
"""


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("house", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("posting_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("job_phase", sa.String(length=8), nullable=True))
        batch.alter_column("account_id", existing_type=sa.String(length=36), nullable=True)
    op.execute("UPDATE ledger_entries SET posting_id = CAST(id AS VARCHAR(36))")
    op.execute(
        f"""
        UPDATE ledger_entries SET job_phase = {_PHASE_OF}
        WHERE job_id IS NOT NULL AND id IN (
            SELECT MIN(id) FROM ledger_entries WHERE job_id IS NOT NULL
            GROUP BY job_id, {_PHASE_OF}
        )
        """  # noqa: S608
    )
    op.execute(
        f"""
        INSERT INTO ledger_entries
            (account_id, house, posting_id, job_id, job_phase, kind, available_delta,
             held_delta, memo, reference, created_at)
        SELECT NULL, {_HOUSE_OF}, posting_id, job_id, NULL, kind,
            -(available_delta + held_delta), 0, memo, NULL, created_at
        FROM ledger_entries
        WHERE account_id IS NOT NULL AND available_delta + held_delta <> 0
        """  # noqa: S608
    )
    with op.batch_alter_table("ledger_entries") as batch:
        batch.alter_column("posting_id", existing_type=sa.String(length=36), nullable=False)
        batch.create_check_constraint(
            op.f("ck_ledger_entries_one_owner"), sa.text("(account_id IS NULL) <> (house IS NULL)")
        )
        batch.create_unique_constraint(op.f("uq_ledger_entries_job_phase"), ["job_id", "job_phase"])
        batch.create_index("ix_ledger_posting", ["posting_id"])


def downgrade() -> None:
    op.execute("DELETE FROM ledger_entries WHERE account_id IS NULL")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_index("ix_ledger_posting")
        batch.drop_constraint(op.f("uq_ledger_entries_job_phase"), type_="unique")
        batch.drop_constraint(op.f("ck_ledger_entries_one_owner"), type_="check")
        batch.alter_column("account_id", existing_type=sa.String(length=36), nullable=False)
        batch.drop_column("job_phase")
        batch.drop_column("posting_id")
        batch.drop_column("house")

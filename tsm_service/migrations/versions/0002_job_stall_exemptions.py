"""jobs: completed_step and suspended_at (silence that is not a stall: the run finished, or the
operator suspended the job)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tsm_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("completed_step", sa.Integer(), nullable=True, comment="the run finished at this step (no stall after it)")
        )
        batch_op.add_column(
            sa.Column("suspended_at", sa.Float(), nullable=True, comment="the operator suspended the job (no stall meanwhile)")
        )


def downgrade() -> None:
    with op.batch_alter_table("tsm_jobs", schema=None) as batch_op:
        batch_op.drop_column("suspended_at")
        batch_op.drop_column("completed_step")

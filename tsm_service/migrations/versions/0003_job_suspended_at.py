"""jobs: suspended_at (the operator suspended the job; its silence is not a stall)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 04:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tsm_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suspended_at', sa.Float(), nullable=True,
                                      comment='the operator suspended the job (no stall meanwhile)'))


def downgrade() -> None:
    with op.batch_alter_table('tsm_jobs', schema=None) as batch_op:
        batch_op.drop_column('suspended_at')

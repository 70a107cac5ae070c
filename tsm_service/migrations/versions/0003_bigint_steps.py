"""steps and mixture versions become 64-bit (a step >= 2**31 was a 500 on PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:45:00

Only PostgreSQL changes: SQLite integers are 64-bit already (and the ORM keeps ``INTEGER`` there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, column, nullable) of every step / mixture-version column.
COLUMNS = [
    ("tsm_jobs", "last_step", True),
    ("tsm_jobs", "mixture_version", True),
    ("tsm_jobs", "evaluated_step", False),
    ("tsm_jobs", "completed_step", True),
    ("tsm_events", "step", False),
    ("tsm_rollbacks", "resume_before_step", False),
    ("tsm_rollbacks", "skip_from_step", False),
    ("tsm_rollbacks", "skip_to_step", False),
    ("tsm_series", "last_step", True),
    ("tsm_samples", "step", False),
    ("tsm_steps", "step", False),
    ("tsm_steps", "mixture_version", True),
    ("tsm_policy_state", "mixture_version", True),
    ("tsm_policy_state", "last_update_step", True),
]


def _alter(to: sa.types.TypeEngine, source: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, nullable in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=source, existing_nullable=nullable)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    # Fails (out of range) when a row holds a value >= 2**31, rather than truncating it.
    _alter(sa.Integer(), sa.BigInteger())

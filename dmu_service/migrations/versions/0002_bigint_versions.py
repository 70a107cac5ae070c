"""mixture versions become 64-bit (a version path parameter >= 2**31 was a 500 on PostgreSQL)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 04:50:00

Only PostgreSQL changes: SQLite integers are 64-bit already (and the ORM keeps ``INTEGER`` there).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = [("mixtures", "current_version"), ("mixture_versions", "version")]


def _alter(to: sa.types.TypeEngine, source: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=to, existing_type=source, existing_nullable=False)


def upgrade() -> None:
    _alter(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    # Fails (out of range) when a version >= 2**31 exists, rather than truncating it.
    _alter(sa.Integer(), sa.BigInteger())

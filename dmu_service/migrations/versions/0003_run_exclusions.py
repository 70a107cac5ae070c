"""run_exclusions: each run's exclusion log (document, position, rule or duplicate_of, value)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_exclusions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("file_index", sa.Integer(), nullable=False),
        sa.Column("record", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("duplicate_of", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_exclusions_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_exclusions")),
    )
    op.create_index("ix_run_exclusions_run_rule", "run_exclusions", ["run_id", "rule", "id"], unique=False)
    op.create_index("ix_run_exclusions_run_position", "run_exclusions", ["run_id", "file_index", "record"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_run_exclusions_run_position", table_name="run_exclusions")
    op.drop_index("ix_run_exclusions_run_rule", table_name="run_exclusions")
    op.drop_table("run_exclusions")

"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-30 22:41:40.771708
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mixtures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mixtures")),
        sa.UniqueConstraint("name", name=op.f("uq_mixtures_name")),
    )
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("domain", sa.String(length=100), nullable=False),
        sa.Column("location", sa.String(length=2000), nullable=False),
        sa.Column("pipeline", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
    )
    op.create_table(
        "mixture_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mixture_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("raw_weights", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mixture_id"], ["mixtures.id"], name=op.f("fk_mixture_versions_mixture_id_mixtures"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mixture_versions")),
        sa.UniqueConstraint("mixture_id", "version", name=op.f("uq_mixture_versions_mixture_id")),
    )
    with op.batch_alter_table("mixture_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mixture_versions_mixture_id"), ["mixture_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("tokenizer_path", sa.String(length=2000), nullable=True),
        sa.Column("tokenizer_id", sa.String(length=16), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("checkpoint", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name=op.f("fk_runs_source_id_sources"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_source_id"), ["source_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status"))
        batch_op.drop_index(batch_op.f("ix_runs_source_id"))

    op.drop_table("runs")
    with op.batch_alter_table("mixture_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mixture_versions_mixture_id"))

    op.drop_table("mixture_versions")
    op.drop_table("sources")
    op.drop_table("mixtures")

"""Transformation blocks as pipeline steps: the incremental ledger, batch plans, changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "block_ledger",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline_id", sa.String(250), nullable=False),
        sa.Column("step", sa.String(250), nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id")),
        sa.Column("block_sha", sa.String(64), nullable=False),
        sa.Column("params_sha", sa.String(64), nullable=False),
        sa.Column("inputs_sha", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer),
        sa.Column("tail", sa.Text),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("pipeline_id", "step", "unit", name="uq_block_ledger_unit"),
    )
    op.create_table(
        "block_batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("step", sa.String(250), nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("units", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.UniqueConstraint(
            "pipeline_id", "run_id", "step", "batch", name="uq_block_batches_batch"
        ),
    )
    op.create_table(
        "block_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.UniqueConstraint("pipeline_id", "run_id", "item_id", name="uq_block_changes_item"),
    )


def downgrade() -> None:
    op.drop_table("block_changes")
    op.drop_table("block_batches")
    op.drop_table("block_ledger")

"""Project actions record the pipeline task that made them (pipeline, Airflow run, task),
so a retried or cleared task reuses its model, explorer map, deployment or version.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("models", "deployments", "explorer_maps", "versions")


def _new_columns(table: str) -> tuple[str, ...]:
    # versions had run_id since 0003
    return (
        ("pipeline_id", "task_id") if table == "versions" else ("pipeline_id", "run_id", "task_id")
    )


def upgrade() -> None:
    # Plain ADD COLUMN / CREATE INDEX (no batch copy of the tables: SQLite enforces the
    # foreign keys that point at models).
    for table in TABLES:
        for name in _new_columns(table):
            op.add_column(table, sa.Column(name, sa.String(250)))
        op.create_index(f"uq_{table}_run", table, ["pipeline_id", "run_id", "task_id"], unique=True)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"uq_{table}_run", table_name=table)
        with op.batch_alter_table(table) as batch:
            for name in reversed(_new_columns(table)):
                batch.drop_column(name)

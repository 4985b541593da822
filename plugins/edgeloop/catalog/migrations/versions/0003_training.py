"""Training: models, deployments, explorer maps and points, versions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("impulse", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("gate", sa.Text),
        sa.Column("model_sha", sa.String(64), nullable=False),
        sa.Column("features_sha", sa.String(64), nullable=False),
        sa.Column("confusion_sha", sa.String(64), nullable=False),
        sa.Column("anomaly_sha", sa.String(64)),
        sa.Column("promoted_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("dataset_id", "number", name="uq_models_number"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("model_type", sa.String(16), nullable=False),
        sa.Column("zip_sha", sa.String(64), nullable=False),
        sa.Column("report_sha", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("published_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("dataset_id", "number", name="uq_deployments_number"),
    )
    op.create_table(
        "explorer_maps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("basis", sa.String(64), nullable=False),
        sa.Column("state_sha", sa.String(64), nullable=False),
        sa.Column("png_sha", sa.String(64), nullable=False),
        sa.Column("stats", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("dataset_id", "number", name="uq_explorer_maps_number"),
    )
    op.create_table(
        "explorer_points",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "map_id",
            sa.Integer,
            sa.ForeignKey("explorer_maps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("window", sa.Integer, nullable=False),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("is_new", sa.Boolean, nullable=False),
        sa.Column("suggested_label", sa.Text),
        sa.Column("confidence", sa.Float),
        sa.UniqueConstraint("map_id", "item_id", "window", name="uq_explorer_points_item"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("run_id", sa.String(250)),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
        sa.Column("manifest_sha", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("dataset_id", "number", name="uq_versions_number"),
    )


def downgrade() -> None:
    for name in ("versions", "explorer_points", "explorer_maps", "deployments", "models"):
        op.drop_table(name)

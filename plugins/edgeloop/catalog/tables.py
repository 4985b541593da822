"""The catalog's tables: datasets → items (label, category, metadata) → files (sha256, blob),
the sync ledger and run summaries. The schema is changed only by the Alembic migrations in
``migrations/``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("category", sa.String(16)),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_key", sa.Text),
    sa.Column("etag", sa.String(100)),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("label_pending", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("dataset_id", "source", "source_key", name="uq_items_source_key"),
    # Identical content is one live item per dataset, whatever runs import it at once.
    sa.Index(
        "uq_items_live_sha256",
        "dataset_id",
        "sha256",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("blob_path", sa.Text, nullable=False),
    sa.UniqueConstraint("item_id", "name", name="uq_files_item_name"),
)

# The sync ledger: what was seen at each source key, so a re-sync lists and compares
# without downloading, and a duplicate is not fetched again while it is unchanged.
source_objects = sa.Table(
    "source_objects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("etag", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id")),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("dataset_id", "source", "key", name="uq_source_objects_key"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pipeline_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.UniqueConstraint("pipeline_id", "run_id", name="uq_runs_run"),
)


def now() -> datetime:
    return datetime.now(UTC)

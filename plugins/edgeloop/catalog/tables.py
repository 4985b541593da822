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


# -- which pipeline task made a record (migration 0006) -----------------------------------
# A project action run by a pipeline records its pipeline, Airflow run and task id, so a
# retried or cleared task finds what it already produced instead of making a second one.
# Records made outside a pipeline (the CLI) leave them NULL (NULLs never collide).


def run_columns(*, run_id: bool = True) -> list[sa.Column]:
    cols = [sa.Column("pipeline_id", sa.String(250))]
    if run_id:
        cols.append(sa.Column("run_id", sa.String(250)))
    return [*cols, sa.Column("task_id", sa.String(250))]


def run_index(table: str) -> sa.Index:
    return sa.Index(f"uq_{table}_run", "pipeline_id", "run_id", "task_id", unique=True)


# -- training (migration 0003): models, deployments, explorer maps, versions -------------
# Artifacts (.keras, features .npz, PNGs, zips, manifests) live in the blob store; these
# rows reference them by sha256.

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # train | retrain
    sa.Column("impulse", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False),  # JSON list, the output order
    sa.Column("metrics", sa.Text, nullable=False),  # JSON
    sa.Column("gate", sa.Text),  # JSON: the quality gate's decision (retrain)
    sa.Column("model_sha", sa.String(64), nullable=False),
    sa.Column("features_sha", sa.String(64), nullable=False),
    sa.Column("confusion_sha", sa.String(64), nullable=False),
    sa.Column("anomaly_sha", sa.String(64)),
    sa.Column("promoted_at", sa.DateTime(timezone=True)),  # the latest promoted is current
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("dataset_id", "number", name="uq_models_number"),
    *run_columns(),
    run_index("models"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("model_type", sa.String(16), nullable=False),
    sa.Column("zip_sha", sa.String(64), nullable=False),
    sa.Column("report_sha", sa.String(64), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # JSON: the report's key figures
    sa.Column("published_at", sa.DateTime(timezone=True)),  # the latest published is current
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("dataset_id", "number", name="uq_deployments_number"),
    *run_columns(),
    run_index("deployments"),
)

explorer_maps = sa.Table(
    "explorer_maps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),  # None: processed features
    sa.Column("basis", sa.String(64), nullable=False),  # what the embeddings come from
    sa.Column("state_sha", sa.String(64), nullable=False),  # the t-SNE map to extend
    sa.Column("png_sha", sa.String(64), nullable=False),
    sa.Column("stats", sa.Text, nullable=False),  # JSON
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("dataset_id", "number", name="uq_explorer_maps_number"),
    *run_columns(),
    run_index("explorer_maps"),
)

explorer_points = sa.Table(
    "explorer_points",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "map_id", sa.Integer, sa.ForeignKey("explorer_maps.id", ondelete="CASCADE"), nullable=False
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

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("run_id", sa.String(250)),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id")),
    sa.Column("manifest_sha", sa.String(64), nullable=False),  # the snapshot, a JSON blob
    sa.Column("summary", sa.Text, nullable=False),  # JSON: counts and metrics
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("dataset_id", "number", name="uq_versions_number"),
    *run_columns(run_id=False),
    run_index("versions"),
)


# -- web (migration 0004): API keys, the project's ingestion settings, upload portals ------
# Secrets given to people (API keys, portal tokens) are stored as their sha256 only; the
# HMAC key signs data and must be read back to check a signature, so it is stored as is.

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),  # shown in listings
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

ingest_settings = sa.Table(
    "ingest_settings",
    metadata,
    sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("hmac_key", sa.String(128), nullable=False),
    sa.Column("device_threshold", sa.Float, nullable=False, default=0.8),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

portals = sa.Table(
    "portals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("bucket_path", sa.Text, nullable=False),  # s3://bucket/prefix/
    sa.Column("conn_id", sa.String(250), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

portal_uploads = sa.Table(
    "portal_uploads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("portal_id", sa.Integer, sa.ForeignKey("portals.id"), nullable=False),
    sa.Column("key", sa.Text, nullable=False),  # the object key written
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # new | replaced | unchanged
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
)


# -- transformation blocks as pipeline steps (migration 0005) -----------------------------
# The incremental ledger: one row per (pipeline, step, unit) — a unit is an item, a file of
# an item or the standalone run — with the hashes it was last run with and its outcome.

block_ledger = sa.Table(
    "block_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pipeline_id", sa.String(250), nullable=False),
    sa.Column("step", sa.String(250), nullable=False),  # the step's group id
    sa.Column("unit", sa.Text, nullable=False),  # "item:12", "item:12:file:a.csv", "standalone"
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id")),
    sa.Column("block_sha", sa.String(64), nullable=False),  # the block folder's content
    sa.Column("params_sha", sa.String(64), nullable=False),
    sa.Column("inputs_sha", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok | failed
    sa.Column("exit_code", sa.Integer),
    sa.Column("tail", sa.Text),  # the last lines of output of a failure
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("pipeline_id", "step", "unit", name="uq_block_ledger_unit"),
)

# A run's plan of one block step: one row per batch (its units; the mapped slot task of
# the same number runs it) and the plan row (batch -1: the counts and the hashes).
block_batches = sa.Table(
    "block_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pipeline_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("step", sa.String(250), nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Column("units", sa.Text, nullable=False),  # JSON list of unit descriptions
    sa.Column("result", sa.Text),  # JSON counts once the batch ran
    sa.UniqueConstraint("pipeline_id", "run_id", "step", "batch", name="uq_block_batches_batch"),
)

# The items a run's block steps created or changed (the summary's checklist counts).
block_changes = sa.Table(
    "block_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pipeline_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
    sa.UniqueConstraint("pipeline_id", "run_id", "item_id", name="uq_block_changes_item"),
)

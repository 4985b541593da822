"""The catalog: datasets → items (label, category, metadata) → files (sha256, blob).

SQLAlchemy Core on SQLite (embedded default) or PostgreSQL (``EDGELOOP_CATALOG_URL``).
The schema is created and changed only by the Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

metadata = sa.MetaData()

datasets = sa.Table(
    "datasets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

items = sa.Table(
    "items", metadata,
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
    sa.Index("ix_items_dataset_sha256", "dataset_id", "sha256"),
)

files = sa.Table(
    "files", metadata,
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
    "source_objects", metadata,
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
    "runs", metadata,
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


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "edgeloop_alembic_version"


def migrate(engine: sa.Engine) -> None:
    """Bring the catalog schema to the newest migration."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration is noise
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@cache
def engine_for(url: str) -> sa.Engine:
    """One engine per URL, migrated on first use."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


class Catalog:
    """Queries and writes over one catalog database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)

    @classmethod
    def from_settings(cls) -> Catalog:
        from edgeloop.settings import get_settings

        return cls(get_settings().catalog_url)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: everything in it is committed together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def dataset_id(self, conn: sa.Connection, name: str, *, create: bool = True) -> int | None:
        row = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == name)).first()
        if row:
            return int(row[0])
        if not create:
            return None
        return int(conn.execute(
            datasets.insert().values(name=name, created_at=now())).inserted_primary_key[0])

    def list_items(self, dataset: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            ds = self.dataset_id(conn, dataset, create=False)
            if ds is None:
                return []
            query = sa.select(items).where(items.c.dataset_id == ds).order_by(items.c.name)
            if not include_deleted:
                query = query.where(items.c.deleted_at.is_(None))
            rows = [dict(r._mapping) for r in conn.execute(query)]
            file_rows = conn.execute(
                sa.select(files).join(items, files.c.item_id == items.c.id)
                .where(items.c.dataset_id == ds)).all()
        by_item: dict[int, list[dict[str, Any]]] = {}
        for f in file_rows:
            by_item.setdefault(f.item_id, []).append(
                {"name": f.name, "sha256": f.sha256, "size": f.size, "blob_path": f.blob_path})
        for row in rows:
            row["metadata"] = json.loads(row["metadata"])
            row["files"] = by_item.get(row["id"], [])
        return rows

    def counts(self, dataset: str) -> dict[str, dict[str, int]]:
        """Live items per label and per category (unlabeled counted as '')."""
        with self.engine.connect() as conn:
            ds = self.dataset_id(conn, dataset, create=False)
            if ds is None:
                return {"label": {}, "category": {}}
            live = sa.and_(items.c.dataset_id == ds, items.c.deleted_at.is_(None))
            out: dict[str, dict[str, int]] = {}
            for name in ("label", "category"):
                col = items.c[name]
                out[name] = {
                    (k or ""): int(n)
                    for k, n in conn.execute(
                        sa.select(col, sa.func.count()).where(live).group_by(col).order_by(col))
                }
        return out

    def record_run(self, pipeline_id: str, run_id: str, dataset: str,
                   summary: dict[str, Any]) -> None:
        """Store a run's summary; re-running the same run replaces it."""
        with self.begin() as conn:
            ds = self.dataset_id(conn, dataset)
            conn.execute(runs.delete().where(
                (runs.c.pipeline_id == pipeline_id) & (runs.c.run_id == run_id)))
            conn.execute(runs.insert().values(
                pipeline_id=pipeline_id, run_id=run_id, dataset_id=ds, finished_at=now(),
                summary=json.dumps(summary, sort_keys=True)))

    def last_run(self, pipeline_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(runs).where(runs.c.pipeline_id == pipeline_id)
                .order_by(runs.c.finished_at.desc(), runs.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return {"run_id": row.run_id, "finished_at": row.finished_at.isoformat(),
                **json.loads(row.summary)}

"""The catalog store: engines, migrations and the queries over the tables.

SQLAlchemy Core on SQLite (embedded default) or PostgreSQL (``EDGELOOP_CATALOG_URL``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from edgeloop.catalog.tables import datasets, files, items, now, runs
from edgeloop.errors import EdgeloopError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "edgeloop_alembic_version"


# Any constant: the PostgreSQL advisory lock that serializes concurrent upgrades.
_UPGRADE_LOCK = 0x6564676C


class CatalogNotMigrated(EdgeloopError):
    """The catalog schema is missing or older than this code: run `edgeloop db upgrade`."""


def _alembic_config(conn: sa.Connection):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def upgrade(url: str) -> tuple[str | None, str]:
    """Bring the catalog at ``url`` to the newest migration; return (before, after).

    Safe to run from several processes at once: on PostgreSQL the upgrade holds an
    advisory lock, on SQLite the database's write lock (BEGIN IMMEDIATE).
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration is noise
    from alembic import command

    engine = engine_for(url)
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _UPGRADE_LOCK})
        before = current_revision(conn)
        command.upgrade(_alembic_config(conn), "head")
        after = current_revision(conn)
    _checked.add(url)
    return before, after or ""


_checked: set[str] = set()


def check_schema(engine: sa.Engine, url: str) -> None:
    """Fail clearly when the catalog is not at the newest migration (checked once per URL)."""
    if url in _checked:
        return
    with engine.connect() as conn:
        current = current_revision(conn)
    head = head_revision()
    if current != head:
        raise CatalogNotMigrated(
            f"the catalog at {engine.url.render_as_string(hide_password=True)} is at schema "
            f"revision {current or '(empty)'}, this edgeloop needs {head}: run "
            "`edgeloop db upgrade` (make demo, make up and the distributed init do it)"
        )
    _checked.add(url)


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write (on SQLite it holds the write lock from its start)."""
    with engine.connect() as conn:
        conn.info["write"] = True
        with conn.begin():
            yield conn


@cache
def engine_for(url: str) -> sa.Engine:
    """One engine per URL (not migrated: see ``upgrade``)."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun explicitly below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            # A writer takes the write lock up front: two writers never deadlock on an
            # upgrade from a read lock, they queue on the busy timeout.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("write", False) else "BEGIN")
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine


class Catalog:
    """Queries and writes over one catalog database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        check_schema(self.engine, url)

    @classmethod
    def from_settings(cls) -> Catalog:
        from edgeloop.settings import get_settings

        return cls(get_settings().catalog_url)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One write transaction: everything in it is committed together or not at all."""
        with write_transaction(self.engine) as conn:
            yield conn

    def dataset_id(self, conn: sa.Connection, name: str, *, create: bool = True) -> int | None:
        """The dataset's id; with ``create``, insert-or-get (safe when several processes
        create the same project at once: the loser of the insert reads the winner's row)."""
        query = sa.select(datasets.c.id).where(datasets.c.name == name)
        row = conn.execute(query).first()
        if row:
            return int(row[0])
        if not create:
            return None
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(
            insert(datasets)
            .values(name=name, created_at=now())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return int(conn.execute(query).scalar_one())

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
                sa.select(files)
                .join(items, files.c.item_id == items.c.id)
                .where(items.c.dataset_id == ds)
            ).all()
        by_item: dict[int, list[dict[str, Any]]] = {}
        for f in file_rows:
            by_item.setdefault(f.item_id, []).append(
                {"name": f.name, "sha256": f.sha256, "size": f.size, "blob_path": f.blob_path}
            )
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
                        sa.select(col, sa.func.count()).where(live).group_by(col).order_by(col)
                    )
                }
        return out

    def record_run(
        self, pipeline_id: str, run_id: str, dataset: str, summary: dict[str, Any]
    ) -> None:
        """Store a run's summary; re-running the same run replaces it."""
        with self.begin() as conn:
            ds = self.dataset_id(conn, dataset)
            conn.execute(
                runs.delete().where((runs.c.pipeline_id == pipeline_id) & (runs.c.run_id == run_id))
            )
            conn.execute(
                runs.insert().values(
                    pipeline_id=pipeline_id,
                    run_id=run_id,
                    dataset_id=ds,
                    finished_at=now(),
                    summary=json.dumps(summary, sort_keys=True),
                )
            )

    def last_run(self, pipeline_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(runs)
                .where(runs.c.pipeline_id == pipeline_id)
                .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return {
            "run_id": row.run_id,
            "finished_at": row.finished_at.isoformat(),
            **json.loads(row.summary),
        }

"""The catalog schema: the Alembic migrations give exactly the SQLAlchemy tables, on SQLite
and PostgreSQL, and concurrent `edgeloop db upgrade` runs leave one clean schema."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from edgeloop.catalog.store import VERSION_TABLE, engine_for, head_revision, upgrade
from edgeloop.catalog.tables import metadata
from edgeloop_dev.devenv import bin_path


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog database (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    yield request.getfixturevalue("pg_url")


def schema_diff(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine_for(url).connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return compare_metadata(context, metadata)


def live_sha_index(url: str) -> dict:
    indexes = sa.inspect(engine_for(url)).get_indexes("items")
    return next(i for i in indexes if i["name"] == "uq_items_live_sha256")


def test_migrations_give_the_table_definitions(empty_url: str) -> None:
    upgrade(empty_url)
    assert schema_diff(empty_url) == []
    index = live_sha_index(empty_url)
    assert index["unique"] and index["column_names"] == ["dataset_id", "sha256"]
    where = index.get("dialect_options", {})
    assert "deleted_at IS NULL" in str(where.get("postgresql_where", where.get("sqlite_where")))


def test_migration_0002_retires_duplicate_live_items(empty_url: str) -> None:
    """A catalog written by concurrent imports before 0002 holds the same content twice."""
    from alembic import command

    from edgeloop.catalog.store import _alembic_config

    engine = engine_for(empty_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(
            sa.text("INSERT INTO datasets (id, name, created_at) VALUES (1, 'p', :t)"),
            {"t": "2026-01-01"},
        )
        for i, key in enumerate(("a.png", "b.png", "c.png"), start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO items (id, dataset_id, name, source, source_key, sha256, size,"
                    " metadata, label_pending, created_at, updated_at)"
                    " VALUES (:id, 1, :k, 's3://b/', :k, :sha, 1, '{}', true, :t, :t)"
                ),
                {"id": i, "k": key, "sha": "s" * 64 if i < 3 else "c" * 64, "t": "2026-01-01"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO source_objects (dataset_id, source, key, etag, size, sha256,"
                    " item_id, updated_at) VALUES (1, 's3://b/', :k, 'e', 1, :sha, :id, :t)"
                ),
                {"id": i, "k": key, "sha": "s" * 64 if i < 3 else "c" * 64, "t": "2026-01-01"},
            )
    upgrade(empty_url)
    with engine.connect() as conn:
        live = conn.execute(
            sa.text("SELECT id FROM items WHERE deleted_at IS NULL ORDER BY id")
        ).scalars()
        assert list(live) == [1, 3]
        ledger = conn.execute(sa.text("SELECT key, item_id FROM source_objects ORDER BY key"))
        assert list(ledger) == [("a.png", 1), ("b.png", 1), ("c.png", 3)]


def test_four_concurrent_db_upgrades_leave_one_clean_schema(tmp_path: Path, pg_url: str) -> None:
    url = pg_url
    env = {**os.environ, "EDGELOOP_CATALOG_URL": url, "EDGELOOP_HOME": str(tmp_path / "home")}
    procs = [
        subprocess.Popen(
            [bin_path("edgeloop"), "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    upgraded = [o for o in outputs if "upgraded from None to" in o]
    assert len(upgraded) == 1, outputs  # the others waited for the lock, then had nothing to do
    assert sum("already at" in o for o in outputs) == 3
    with engine_for(url).connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert versions == [(head_revision(),)]
    assert schema_diff(url) == []

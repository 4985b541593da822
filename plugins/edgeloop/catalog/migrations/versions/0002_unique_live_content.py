"""Identical content is one live item per dataset: a partial unique index on
items (dataset_id, sha256) WHERE deleted_at IS NULL (replaces ix_items_dataset_sha256).

Catalogs written by concurrent imports before this revision may hold the same content
in several live items: the oldest item (lowest id) stays, the others are marked deleted
and their source keys point at the one that stays.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    conn = op.get_bind()
    items = sa.table(
        "items",
        sa.column("id", sa.Integer),
        sa.column("dataset_id", sa.Integer),
        sa.column("sha256", sa.String),
        sa.column("deleted_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    source_objects = sa.table("source_objects", sa.column("item_id", sa.Integer))
    groups = conn.execute(
        sa.select(items.c.dataset_id, items.c.sha256, sa.func.min(items.c.id))
        .where(items.c.deleted_at.is_(None))
        .group_by(items.c.dataset_id, items.c.sha256)
        .having(sa.func.count() > 1)
    ).all()
    ts = datetime.now(UTC)
    for dataset_id, sha256, keep in groups:
        extra = sa.select(items.c.id).where(
            (items.c.dataset_id == dataset_id)
            & (items.c.sha256 == sha256)
            & items.c.deleted_at.is_(None)
            & (items.c.id != keep)
        )
        conn.execute(
            source_objects.update().where(source_objects.c.item_id.in_(extra)).values(item_id=keep)
        )
        conn.execute(
            items.update()
            .where(
                (items.c.dataset_id == dataset_id)
                & (items.c.sha256 == sha256)
                & items.c.deleted_at.is_(None)
                & (items.c.id != keep)
            )
            .values(deleted_at=ts, updated_at=ts)
        )
    op.drop_index("ix_items_dataset_sha256", table_name="items")
    op.create_index(
        "uq_items_live_sha256",
        "items",
        ["dataset_id", "sha256"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_items_live_sha256", table_name="items")
    op.create_index("ix_items_dataset_sha256", "items", ["dataset_id", "sha256"])
